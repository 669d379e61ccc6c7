"""Labelled videos: a video with its predictions drawn on it (``predict --overlay``,
``mouse-pipeline overlay``), as DeepLabCut's labelled videos are for pose.

Each output frame is the input frame (scaled up by a whole factor when it is narrower
than :data:`MIN_WIDTH` pixels) above a panel with one row per behaviour: its name, a
bar of the current probability with a tick at the threshold, and the ethogram strip of
the whole video (the fraction of predicted frames in each pixel column) with a cursor at
the current frame. The behaviours predicted for the current frame are written in the top
left corner of the image, the frame index and time in the top right.

The video is read with :func:`mouse_pipeline.video.iter_batches` a batch at a time and
written frame by frame with OpenCV's ``mp4v`` writer, at the input's frame rate and
frame count, so memory stays flat whatever the length. The file is written under a
temporary name and renamed when complete (:mod:`mouse_pipeline.fileio`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .fileio import atomic_path
from .plots import PALETTE

log = logging.getLogger(__name__)

MIN_WIDTH = 320  # narrower videos are scaled up by a whole factor
ROW = 22  # panel row height in pixels
NAME_W = 110  # name column
BAR_W = 80  # probability bar column
SUFFIX = "_overlay.mp4"
_BATCH = 32


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def strip_image(binary: np.ndarray, width: int) -> np.ndarray:
    """``(K, width)`` fractions in [0, 1]: the share of predicted frames of each behaviour in
    each pixel column (frames split evenly over the columns)."""
    n, k = binary.shape
    out = np.zeros((k, width), np.float32)
    if n == 0 or width <= 0:
        return out
    edges = np.linspace(0, n, width + 1)
    lo, hi = np.floor(edges[:-1]).astype(int), np.maximum(np.ceil(edges[1:]).astype(int), 1)
    cum = np.vstack([np.zeros((1, k)), np.cumsum(binary == 1, axis=0)])
    out[:] = ((cum[hi] - cum[lo]) / (hi - lo)[:, None]).T
    return out


class Painter:
    """Draws the panel and labels onto frames of one video (see the module docstring)."""

    def __init__(self, probs: np.ndarray, binary: np.ndarray, behaviors: tuple[str, ...],
                 thresholds: tuple[float, ...] | None, frame_w: int, frame_h: int, fps: float) -> None:
        self.probs, self.binary, self.behaviors, self.fps = probs, binary, behaviors, fps
        self.thresholds = thresholds
        self.scale = max(1, math.ceil(MIN_WIDTH / frame_w))
        self.w, self.h = frame_w * self.scale, frame_h * self.scale
        self.w += self.w % 2
        self.panel_h = ROW * len(behaviors) + 6
        self.out_h = self.h + self.panel_h
        self.out_h += self.out_h % 2
        self.strip_x = NAME_W + BAR_W + 10
        self.strip_w = max(1, self.w - self.strip_x - 4)
        self.colours = [_bgr(PALETTE[j % len(PALETTE)]) for j in range(len(behaviors))]
        self.base = self._panel()

    @property
    def size(self) -> tuple[int, int]:
        """Output (width, height)."""
        return self.w, self.out_h

    def _panel(self) -> np.ndarray:
        """The static part of the panel: names and ethogram strips."""
        panel = np.full((self.out_h - self.h, self.w, 3), 32, np.uint8)
        strips = strip_image(self.binary, self.strip_w)
        for j, name in enumerate(self.behaviors):
            y = 3 + j * ROW
            cv2.putText(panel, name[:14], (4, y + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1,
                        cv2.LINE_AA)
            row = np.full((ROW - 6, self.strip_w, 3), 60, np.float32)
            colour = np.array(self.colours[j], np.float32)
            row += strips[j][None, :, None] * (colour - 60)
            panel[y + 3:y + ROW - 3, self.strip_x:self.strip_x + self.strip_w] = row.astype(np.uint8)
        return panel

    def draw(self, frame_bgr: np.ndarray, index: int) -> np.ndarray:
        """The output frame for input frame ``index`` (BGR)."""
        out = np.zeros((self.out_h, self.w, 3), np.uint8)
        img = frame_bgr
        if self.scale > 1:
            img = cv2.resize(img, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_NEAREST)
        out[:img.shape[0], :img.shape[1]] = img
        panel = out[self.h:]
        panel[:] = self.base
        on = [b for j, b in enumerate(self.behaviors) if self.binary[index, j] == 1]
        text = ", ".join(on) if on else "-"
        clock = f"{index}  {index / self.fps:.1f} s"
        size = cv2.getTextSize(clock, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
        for label, x in ((text, 6), (clock, self.w - size - 6)):
            cv2.putText(out, label, (x, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5 if x == 6 else 0.45, (0, 0, 0), 3,
                        cv2.LINE_AA)
            cv2.putText(out, label, (x, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5 if x == 6 else 0.45,
                        (255, 255, 255), 1, cv2.LINE_AA)
        cursor = self.strip_x + int(index * self.strip_w / max(1, len(self.probs)))
        for j in range(len(self.behaviors)):
            y = 3 + j * ROW
            p = float(self.probs[index, j])
            x0 = NAME_W
            cv2.rectangle(panel, (x0, y + 4), (x0 + BAR_W, y + ROW - 4), (90, 90, 90), -1)
            if p == p:
                cv2.rectangle(panel, (x0, y + 4), (x0 + int(round(p * BAR_W)), y + ROW - 4),
                              self.colours[j], -1)
            if self.thresholds is not None:
                tx = x0 + int(round(self.thresholds[j] * BAR_W))
                cv2.line(panel, (tx, y + 2), (tx, y + ROW - 2), (255, 255, 255), 1)
            cv2.line(panel, (cursor, y + 1), (cursor, y + ROW - 1), (255, 255, 255), 1)
        return out


def write_overlay(video: str | Path, out: str | Path, probs: np.ndarray, binary: np.ndarray,
                  behaviors: tuple[str, ...], fps: float,
                  thresholds: tuple[float, ...] | None = None) -> Path:
    """Write the labelled video of ``video`` to ``out`` (mp4, ``mp4v``); return ``out``.

    Parameters
    ----------
    video
        The input video.
    probs, binary
        ``(n_frames, K)`` per-frame probabilities and 0/1 labels, one row per frame of
        the video.
    behaviors
        The K behaviour names.
    fps
        The output's frame rate (the input's own).
    thresholds
        Per behaviour, drawn as a tick on the probability bar (None: no tick).

    Raises
    ------
    InputError
        The video has another number of frames than ``probs`` has rows, or cannot be read.
    """
    from .video import iter_batches

    video, out = Path(video), Path(out)
    probs, binary = np.asarray(probs, np.float32), np.asarray(binary)
    n = probs.shape[0]
    painter: Painter | None = None
    writer = None
    index = 0
    with atomic_path(out) as tmp:
        try:
            for batch in iter_batches(video, _BATCH):
                if painter is None:
                    painter = Painter(probs, binary, behaviors, thresholds, batch.shape[2], batch.shape[1], fps)
                    # OpenCV picks the container from the suffix: the temporary name must keep it
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                             painter.size)
                    if not writer.isOpened():
                        raise InputError(f"{out}: OpenCV cannot write an mp4v video here; check the "
                                         "folder is writable")
                for rgb in batch:
                    if index >= n:
                        raise InputError(f"{video}: has more frames than its predictions ({n}); use the "
                                         "predictions made from this video")
                    writer.write(painter.draw(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), index))
                    index += 1
        finally:
            if writer is not None:
                writer.release()
        if index != n:
            raise InputError(f"{video}: has {index} frames but its predictions have {n}; use the "
                             "predictions made from this video")
    log.info("%s: labelled video of %d frames -> %s", video.name, index, out)
    return out


def read_predictions_file(path: Path) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Behaviours, probabilities and 0/1 labels of a ``<stem>_predictions.csv`` of predict."""
    from .scoring import read_predictions

    table = read_predictions(path)
    behaviors = tuple(h[2:] for h in table.header if h.startswith("p_") and h[2:] in table.header)
    if not behaviors:
        raise InputError(f"{path}: no p_<behaviour> column with its <behaviour> 0/1 column; pass a "
                         "<video>_predictions.csv written by `mouse-pipeline predict`")
    probs = np.stack([table.floats(f"p_{b}", "a probability in [0, 1]", 0, 1) for b in behaviors], axis=1)
    binary = np.stack([table.floats(b, "0 or 1", 0, 1) for b in behaviors], axis=1).astype(np.int8)
    return behaviors, probs, binary


def _thresholds(folder: Path, behaviors: tuple[str, ...]) -> tuple[float, ...] | None:
    """The thresholds ``predictions.json`` records for ``behaviors`` (None when it has none)."""
    import json

    from .predict import SIDECAR

    path = folder / SIDECAR
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8")).get("behaviors", {})
        return tuple(float(record[b]["threshold"]) for b in behaviors)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s: no threshold per behaviour; the overlay draws no threshold ticks", path)
        return None


def overlay_predictions(predictions: str | Path, videos: list[Path], out: str | Path | None = None) -> list[Path]:
    """Labelled videos from a predict output folder: ``<id>_overlay.mp4`` for each video,
    from its ``<id>_predictions.csv``, into ``out`` (default: ``predictions``)."""
    from .dataset import video_files
    from .video import container_fps

    predictions = Path(predictions)
    out = Path(out) if out is not None else predictions
    files = video_files(videos)
    jobs = []
    for f in files:  # every video is checked before anything is written
        csv_path = predictions / f"{f.video_id}_predictions.csv"
        if not csv_path.is_file():
            raise InputError(f"{csv_path}: missing; predict {f.path} into {predictions} first")
        jobs.append((f, csv_path, container_fps(f.path)))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for f, csv_path, fps in jobs:
        behaviors, probs, binary = read_predictions_file(csv_path)
        written.append(write_overlay(f.path, out / f"{f.video_id}{SUFFIX}", probs, binary, behaviors, fps,
                                     _thresholds(predictions, behaviors)))
    return written
