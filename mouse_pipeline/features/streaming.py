"""Stage 1 streaming: videos decoded in background threads, fed to one backbone in order.

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
from ..video import iter_batches, video_fingerprint
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
            stop: threading.Event, frame_threads: int = 1) -> None:
    """Decoder thread: every batch of one video into its queue, then _DONE (or the exception)."""
    batches = iter_batches(job.path, batch_size, job.crop, out_size, threads=frame_threads)
    try:
        for batch in batches:
            if not _put(q, batch, ready, stop):
                return
        _put(q, _DONE, ready, stop)
    except BaseException as exc:  # handed to the main thread, never lost
        _put(q, exc, ready, stop)
    finally:
        batches.close()


@dataclass
class _Active:
    job: VideoJob
    reason: str
    writer: CacheWriter
    queue: queue.Queue
    thread: threading.Thread
    started: float
    bar: tqdm


class VideoStream:
    """Up to ``workers`` decoding videos, each with its own bounded queue; see the module notes.

    The main thread always takes the next batch of the *oldest* video that has one ready,
    so videos complete in order, as early as their decoder allows (what a killed run keeps),
    while spare model time goes to the videos decoded behind it.
    """

    def __init__(self, backbone: Any, cfg: Config, workers: int, overall: tqdm, progress: bool):
        self.backbone, self.cfg, self.workers = backbone, cfg, max(1, workers)
        self.overall, self.progress = overall, progress
        self.depth = max(1, cfg.extract.queue_batches)
        self.ready = threading.Semaphore(0)  # one release per item put into any queue
        self.stop = threading.Event()
        self.active: dict[int, _Active] = {}  # in start order

    def _start(self, slot: int, job: VideoJob, reason: str) -> None:
        attrs = expected_for(self.cfg, self.backbone.name, self.backbone.weights_id, self.backbone.input_size, job)
        path = cache_path(self.cfg.extract.cache, self.backbone.name, job.video_id)
        writer = CacheWriter(path, job.info.n_frames, self.backbone.dim, self.cfg.extract.dtype, attrs)
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        thread = threading.Thread(target=_decode, name=f"decode-{job.video_id}", daemon=True,
                                  args=(job, self.cfg.extract.batch_size, self.backbone.input_size, q,
                                        self.ready, self.stop, self.cfg.extract.frame_threads))
        bar = tqdm(total=job.info.n_frames, desc=f"{self.backbone.name} {job.video_id}", unit="frame",
                   leave=False, disable=not self.progress, position=1 + slot, dynamic_ncols=True)
        try:
            writer.__enter__()
        except BaseException:
            bar.close()
            raise
        self.active[slot] = _Active(job, reason, writer, q, thread, time.perf_counter(), bar)
        log.info("%s/%s: extracting %d frames (%s)", self.backbone.name, job.video_id,
                 job.info.n_frames, reason)
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
            act.writer.__exit__(type(error), error, error.__traceback__)
            raise error
        act.writer.attrs["extract_frames_per_s"] = act.job.info.n_frames / max(seconds, 1e-9)
        act.writer.__exit__(None, None, None)
        return seconds

    def run(self, todo: list[tuple[VideoJob, str]], keep_going: bool) -> Iterator[VideoResult]:
        """Yield a :class:`VideoResult` per video as it completes (or fails, with keep_going)."""
        pending = list(todo)
        free = list(range(self.workers))[::-1]
        try:
            while pending or self.active:
                while pending and free:
                    job, reason = pending.pop(0)
                    self._start(free.pop(), job, reason)
                slot, item = self._next_item()
                act = self.active[slot]
                if isinstance(item, np.ndarray):
                    act.writer.write(self.backbone.embed(item))
                    act.bar.update(len(item))
                    self.overall.update(len(item))
                    continue
                job, reason = act.job, act.reason
                path = cache_path(self.cfg.extract.cache, self.backbone.name, job.video_id)
                free.append(slot)
                try:
                    seconds = self._finish(slot, item if isinstance(item, BaseException) else None)
                except (InputError, CacheError) as exc:
                    if not keep_going:
                        raise
                    log.error("%s/%s: failed: %s", self.backbone.name, job.video_id, exc)
                    yield VideoResult(job.video_id, self.backbone.name, "failed", job.info.n_frames,
                                      reason=str(exc), path=path)
                    continue
                yield VideoResult(job.video_id, self.backbone.name, "extracted", job.info.n_frames,
                                  seconds, reason=reason, path=path)
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
            act.writer.__exit__(RuntimeError, RuntimeError("extraction stopped"), None)
        self.active.clear()
