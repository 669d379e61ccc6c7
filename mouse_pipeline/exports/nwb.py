"""Predictions of one video as an NWB file (``predict --format nwb``), read by pynwb and NWB Widgets.

``<stem>.nwb`` holds:

``intervals/behavior_bouts``
    A ``TimeIntervals`` table, one row per predicted bout: ``start_time`` and
    ``stop_time`` in seconds (the bouts CSV's ``start_s`` and ``end_s``: the start of the
    first frame and the end of the last), ``behavior``, ``start_frame`` and ``end_frame``
    (inclusive).
``processing/behavior/behavior_probabilities``
    A ``TimeSeries`` of the per-frame probabilities, ``(n_frames, n_behaviours)``,
    ``rate`` the video's frame rate, ``starting_time`` 0; the column order is in its
    ``comments`` (``behaviors: a, b, c``) and in ``behavior_labels`` below.
``processing/behavior/behavior_labels``
    A ``TimeSeries`` of the post-processed 0/1 labels, same layout.
``processing/behavior/pose`` (only where the run cropped around a pose file)
    An ``ndx-pose`` ``PoseEstimation`` with the cropping body part's points as read
    from the pose file (x, y in pixels, NaN where missing, and their likelihoods) at the
    video's frame rate, its source software (DeepLabCut-style file) and the file's path.

The file is written under a temporary name and renamed (:mod:`mouse_pipeline.fileio`).
pynwb and ndx-pose are imported only when an NWB file is written.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from ..metrics import bouts_from_binary

SUFFIX = ".nwb"
MODULE = "behavior"


def write_nwb(path: str | Path, video: str, probs: np.ndarray, binary: np.ndarray,
              behaviors: tuple[str, ...], fps: float, source: str | Path, model: str,
              pose: tuple[Path, str] | None = None) -> Path:
    """Write one video's predictions to ``path``; return it.

    Parameters
    ----------
    path
        The ``.nwb`` file to write.
    video
        The video id (the file's identifier prefix and session description).
    probs, binary
        ``(n_frames, K)`` probabilities and post-processed 0/1 labels.
    behaviors
        The K behaviour names.
    fps
        The video's own frame rate (times are ``frame / fps``).
    source
        The video file (recorded as the session's source).
    model
        Which model predicted (``Predictor.name``).
    pose
        ``(pose file, body part)`` when the run cropped around that body part.
    """
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.epoch import TimeIntervals

    from .. import __version__

    path = Path(path)
    nwb = NWBFile(session_description=f"mouse-pipeline predictions of {video} ({model})",
                  identifier=f"{video}-{uuid.uuid4()}", session_start_time=datetime.now(timezone.utc),
                  source_script=f"mouse-pipeline {__version__} predict --format nwb",
                  source_script_file_name="mouse-pipeline",
                  notes=f"video: {Path(source).resolve()}")
    bouts = TimeIntervals(name="behavior_bouts", description="predicted bouts per behaviour (post-processed)")
    bouts.add_column(name="behavior", description="behaviour name")
    bouts.add_column(name="start_frame", description="first frame of the bout (0-based)")
    bouts.add_column(name="end_frame", description="last frame of the bout (inclusive)")
    for j, b in enumerate(behaviors):
        for s, e in bouts_from_binary(binary[:, j]):
            bouts.add_interval(start_time=s / fps, stop_time=(e + 1) / fps, behavior=b,
                               start_frame=int(s), end_frame=int(e))
    nwb.add_time_intervals(bouts)
    module = nwb.create_processing_module(MODULE, "behaviour predictions of mouse-pipeline")
    order = "behaviors: " + ", ".join(behaviors)
    module.add(TimeSeries(name="behavior_probabilities", data=np.asarray(probs, np.float32),
                          unit="probability", rate=float(fps), starting_time=0.0, comments=order,
                          description="per-frame probability of each behaviour (columns in comments)"))
    module.add(TimeSeries(name="behavior_labels", data=np.asarray(binary, np.uint8), unit="n.a.",
                          rate=float(fps), starting_time=0.0, comments=order,
                          description="per-frame 0/1 label of each behaviour after post-processing"))
    if pose is not None:
        module.add(_pose(nwb, *pose, fps))
    with atomic_path(path) as tmp, NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwb)
    return path


def _pose(nwb, pose_file: Path, bodypart: str, fps: float):
    """The body part's track of the pose file as an ndx-pose ``PoseEstimation``."""
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons

    from ..pose_formats import read_tracks

    tracks = read_tracks(Path(pose_file), bodypart)
    series = []
    for individual, track in sorted(tracks.items()):
        name = bodypart if len(tracks) == 1 else f"{individual}_{bodypart}"
        conf = track.likelihood if track.likelihood is not None else np.full(len(track.xy), np.nan)
        series.append(PoseEstimationSeries(
            name=name, description=f"{bodypart} as in {Path(pose_file).name}", data=track.xy,
            unit="pixels", reference_frame="(0, 0) is the top left corner of the video frame",
            rate=float(fps), starting_time=0.0, confidence=conf,
            confidence_definition="likelihood given by the pose estimation software (NaN: none)"))
    skeleton = Skeleton(name="skeleton", nodes=[s.name for s in series])
    nwb.create_processing_module("pose_skeletons", "skeletons of the pose estimates").add(
        Skeletons(skeletons=[skeleton]))
    return PoseEstimation(name="pose", pose_estimation_series=series, skeleton=skeleton,
                          description=f"pose used to crop the frames (body part {bodypart})",
                          source_software="DeepLabCut-style pose file", scorer=str(Path(pose_file).name))
