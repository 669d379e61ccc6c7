"""Stage 1 streaming: videos decoded in background threads, fed to one backbone in order.

One backbone serves its streams: the frames (stream ``<backbone>``) and their motion
images (stream ``<backbone>+motion``, :mod:`.motion`). A video whose files of both streams
need work is decoded once; each batch then goes through the backbone twice, once as
frames and once as motion images, into one :class:`~.writer.CacheWriter` per stream.

Frames are decoded, cropped and resized in background threads, one per video (plus
``extract.frame_threads`` that crop and resize its frames while it decodes), with up to
``extract.decode_workers`` videos decoded at the same time, each into its own bounded
queue of ``extract.queue_batches`` batches. The main thread runs :meth:`Backbone.embed`
on the next batch of the *oldest* video that has one ready and appends the rows to that
video's :class:`~.writer.CacheWriter`; a video's batches arrive in frame order. So the
model waits for decoding only when every decoder is slower than it, and videos still
complete one after the other (the oldest as fast as its decoder allows), which is what a
killed run keeps. An exception in a decoder (e.g. a frame that fails to decode) reaches
the main thread through the queue and is raised there; every decoder is stopped and
joined and every unfinished temporary file deleted before :meth:`VideoStream.run` ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from ..config import Config
from ..errors import CacheError, InputError
from ..video import iter_batches, iter_motion_batches, video_fingerprint
from .motion import MotionSettings, is_motion_stream, motion_image
from .planning import VideoJob, VideoResult, expected_for
from .store import cache_path
from .writer import CacheWriter

log = logging.getLogger(__name__)

_DONE = object()  # a decoder's last item: every batch of its video was sent


def _put(q: queue.Queue, item: Any, ready: threading.Semaphore, stop: threading.Event) -> bool:
    """Put into a bounded queue and signal it, unless asked to stop; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
        except queue.Full:
            continue
        ready.release()
        return True
    return False


def _decode(job: VideoJob, batch_size: int, out_size: int, q: queue.Queue, ready: threading.Semaphore,
            stop: threading.Event, frame_threads: int = 1, rgb: bool = True,
            motion: MotionSettings | None = None) -> None:
    """Decoder thread: every ``(rgb, motion)`` batch pair of one video into its queue (None
    for a stream not asked for), then _DONE (or the exception)."""
    if motion is None:
        batches = iter_batches(job.path, batch_size, job.crop, out_size, threads=frame_threads)
        pairs = ((batch, None) for batch in batches)
    else:
        def make(prev: np.ndarray, cur: np.ndarray, dst: np.ndarray) -> None:
            motion_image(prev, cur, motion, dst)

        batches = pairs = iter_motion_batches(job.path, batch_size, job.crop, out_size, make, rgb=rgb,
                                              threads=frame_threads)
    try:
        for pair in pairs:
            if not _put(q, pair, ready, stop):
                return
        _put(q, _DONE, ready, stop)
    except BaseException as exc:  # handed to the main thread, never lost
        _put(q, exc, ready, stop)
    finally:
        batches.close()


@dataclass
class _Active:
    job: VideoJob
    reasons: dict[str, str]  # stream -> why it is extracted
    writers: dict[str, CacheWriter]  # stream -> its file, in the order of reasons
    queue: queue.Queue
    thread: threading.Thread
    started: float
    bar: tqdm


class VideoStream:
    """Up to ``workers`` decoding videos, each with its own bounded queue; see the module notes.

    The main thread always takes the next batch of the *oldest* video that has one ready,
    so videos complete in order, as early as their decoder allows (what a killed run keeps),
    while spare model time goes to the videos decoded behind it. ``backbone`` is built
    once; each video's streams (its own, its motion stream, or both) come from it.
    """

    def __init__(self, backbone: Any, cfg: Config, workers: int, overall: tqdm, progress: bool):
        self.backbone, self.cfg, self.workers = backbone, cfg, max(1, workers)
        self.overall, self.progress = overall, progress
        self.depth = max(1, cfg.extract.queue_batches)
        self.ready = threading.Semaphore(0)  # one release per item put into any queue
        self.stop = threading.Event()
        self.active: dict[int, _Active] = {}  # in start order

    def _start(self, slot: int, job: VideoJob, reasons: dict[str, str]) -> None:
        writers = {}
        for stream in reasons:
            attrs = expected_for(self.cfg, stream, self.backbone.weights_id, self.backbone.input_size, job)
            path = cache_path(self.cfg.extract.cache, stream, job.video_id)
            writers[stream] = CacheWriter(path, job.info.n_frames, self.backbone.dim, self.cfg.extract.dtype, attrs)
        motion = (MotionSettings.from_config(self.cfg.extract.motion)
                  if any(is_motion_stream(s) for s in reasons) else None)
        rgb = any(not is_motion_stream(s) for s in reasons)
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        thread = threading.Thread(target=_decode, name=f"decode-{job.video_id}", daemon=True,
                                  args=(job, self.cfg.extract.batch_size, self.backbone.input_size, q,
                                        self.ready, self.stop, self.cfg.extract.frame_threads, rgb, motion))
        names = " + ".join(reasons)
        bar = tqdm(total=job.info.n_frames, desc=f"{names} {job.video_id}", unit="frame",
                   leave=False, disable=not self.progress, position=1 + slot, dynamic_ncols=True)
        entered: list[CacheWriter] = []
        try:
            for writer in writers.values():
                writer.__enter__()
                entered.append(writer)
        except BaseException as exc:
            for writer in entered:
                writer.__exit__(type(exc), exc, exc.__traceback__)
            bar.close()
            raise
        self.active[slot] = _Active(job, dict(reasons), writers, q, thread, time.perf_counter(), bar)
        for stream, reason in reasons.items():
            log.info("%s/%s: extracting %d frames (%s)", stream, job.video_id, job.info.n_frames, reason)
        thread.start()

    def _next_item(self) -> tuple[int, Any]:
        """The next item of the oldest video that has one (waits for one to arrive)."""
        while not self.ready.acquire(timeout=1.0):
            # every decoder signals its last item before it ends: look once more, then give up
            if not any(a.thread.is_alive() for a in self.active.values()):
                if self.ready.acquire(blocking=False):
                    break
                raise RuntimeError("decoder threads ended without a result")
        for slot, act in self.active.items():
            try:
                return slot, act.queue.get_nowait()
            except queue.Empty:
                continue
        raise RuntimeError("a decoder signalled an item that is not there")

    def _finish(self, slot: int, error: BaseException | None) -> float:
        act = self.active.pop(slot)
        act.thread.join()
        act.bar.close()
        seconds = time.perf_counter() - act.started
        if error is None:  # the attributes must describe the bytes that were decoded
            try:
                if video_fingerprint(act.job.path) != act.job.fingerprint:
                    error = InputError(f"{act.job.path}: the video changed while it was being read; "
                                       "run extract again")
            except InputError as exc:
                error = exc
        if error is not None:
            for writer in act.writers.values():
                writer.__exit__(type(error), error, error.__traceback__)
            raise error
        left = list(act.writers.values())
        try:
            while left:
                writer = left.pop(0)  # a writer whose completion fails deletes its own file
                writer.attrs["extract_frames_per_s"] = act.job.info.n_frames / max(seconds, 1e-9)
                writer.__exit__(None, None, None)
        except BaseException as exc:  # the video's other files are not left unfinished either
            for writer in left:
                writer.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return seconds

    def run(self, todo: list[tuple[VideoJob, dict[str, str]]], keep_going: bool) -> Iterator[VideoResult]:
        """Yield a :class:`VideoResult` per (stream, video) as the video completes (or fails,
        with keep_going); ``todo`` holds each video with its streams to extract and why."""
        pending = list(todo)
        free = list(range(self.workers))[::-1]
        try:
            while pending or self.active:
                while pending and free:
                    job, reasons = pending.pop(0)
                    self._start(free.pop(), job, reasons)
                slot, item = self._next_item()
                act = self.active[slot]
                if isinstance(item, tuple):
                    rgb, moving = item
                    for stream, writer in act.writers.items():
                        writer.write(self.backbone.embed(moving if is_motion_stream(stream) else rgb))
                        self.overall.update(len(rgb if rgb is not None else moving))
                    act.bar.update(len(rgb if rgb is not None else moving))
                    continue
                job, reasons = act.job, act.reasons
                free.append(slot)
                try:
                    seconds = self._finish(slot, item if isinstance(item, BaseException) else None)
                except (InputError, CacheError) as exc:
                    if not keep_going:
                        raise
                    for stream in reasons:
                        log.error("%s/%s: failed: %s", stream, job.video_id, exc)
                        yield VideoResult(job.video_id, stream, "failed", job.info.n_frames, reason=str(exc),
                                          path=cache_path(self.cfg.extract.cache, stream, job.video_id))
                    continue
                for stream, reason in reasons.items():
                    yield VideoResult(job.video_id, stream, "extracted", job.info.n_frames, seconds,
                                      reason=reason, path=cache_path(self.cfg.extract.cache, stream, job.video_id))
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        """Stop and join every decoder, delete every unfinished temporary file."""
        self.stop.set()
        for act in self.active.values():
            while act.thread.is_alive():
                try:
                    act.queue.get_nowait()
                except queue.Empty:
                    act.thread.join(timeout=0.05)
            act.bar.close()
            for writer in act.writers.values():
                writer.__exit__(RuntimeError, RuntimeError("extraction stopped"), None)
        self.active.clear()
