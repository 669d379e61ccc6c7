"""``mouse-pipeline cache import``: per-frame features made by another tool, into the cache.

A folder holds one feature file per video (``.npy``, ``.h5`` or ``.csv``, read by
:mod:`.import_readers`), named after the video (its file stem or its id). Each is written
to ``<cache>/<name>/<video_id>.h5`` in the cache contract of :mod:`.store`, under a
stream name the user chooses (never a registry backbone's name), with its provenance
(``origin``, ``tool``, ``source``, ``source_sha256``, ...; see :mod:`.store`). Stage 2
then trains and predicts on ``name`` like on any backbone (``extract.backbones:
[name]``); ``extract`` skips it and ``predict`` looks for it in the cache
(:func:`imported_names`, :func:`check_imported`): neither can compute it.

1. Matching: every feature file must belong to one of the config's videos
   (``data.videos``) and every video must have exactly one feature file; otherwise
   nothing is written (narrow ``data.videos`` to import a subset).
2. Freshness: a cache file is up to date when it records the same source content
   (sha256; for HDF5 also the same dataset) and the same video fingerprint. Up-to-date
   videos are skipped without decoding anything (``overwrite`` re-imports them).
3. Validation: every other video is decoded once (true frame count, frame rate) and its
   feature file read and checked: rows equal the decoded frames, values are finite, and
   every file of the stream (those already in the cache included) has the same number of
   features and the same tool. Every problem is reported at once in one InputError and
   nothing is written.
4. Writing: under the lock of ``<cache>/<name>``, file after file through the cache's
   atomic writer (:class:`.writer.CacheWriter`), so a killed import leaves no partial
   file and keeps the files finished before it. Feature files are read again here (one
   at a time: memory stays that of one file) and must still have the content validated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..config import Config
from ..dataset import VideoFile, video_files
from ..errors import CacheError, ConfigError, InputError
from ..fileio import sha256_file
from ..locks import acquire_lock
from ..video import probe_video, video_fingerprint
from .import_readers import FORMATS, SUFFIXES, format_of, read_features
from .store import (
    FINGERPRINT_KEYS,
    ORIGIN_IMPORT,
    cache_path,
    is_fresh,
    is_imported,
    read_attrs,
    sanitize_id,
)
from .writer import CacheWriter, remove_stale_temps

log = logging.getLogger(__name__)

STORE_DTYPE = "float32"


@dataclass(frozen=True)
class Source:
    """One video and the feature file it is imported from."""

    video: VideoFile
    path: Path
    fmt: str
    sha256: str
    fingerprint: dict[str, Any]


@dataclass(frozen=True)
class ImportResult:
    """What happened to one video: ``imported`` or ``up_to_date`` (with the reason)."""

    video_id: str
    status: str
    frames: int
    dim: int
    source: Path
    reason: str = ""


@dataclass
class ImportSummary:
    """What one :func:`import_features` call did, per video."""

    name: str
    folder: Path
    results: list[ImportResult]

    def describe(self) -> str:
        """A short report for the command line."""
        done = sum(r.status == "imported" for r in self.results)
        lines = [f"{self.name}: {len(self.results)} video(s), {done} imported, "
                 f"{len(self.results) - done} up to date, in {self.folder}"]
        lines += [f"  {r.video_id}: {r.frames} frames x {r.dim} features from {r.source.name}"
                  + (f" ({r.reason})" if r.reason else "") for r in self.results if r.status == "imported"]
        return "\n".join(lines)


def check_name(name: str) -> None:
    """Refuse a stream name that is a registry backbone's or ``pose`` (computed by extract),
    or not usable as a folder name."""
    from ..backbones import REGISTRY

    if not name or sanitize_id(name) != name:
        raise ConfigError(f"--name {name!r}: a stream name may hold only A-Z a-z 0-9 . _ - (it names "
                          "the cache folder and the run's model folders); choose another")
    from .pose_stream import POSE_STREAM

    if name in REGISTRY or name == POSE_STREAM:
        raise ConfigError(f"--name {name}: the name of a backbone that extract computes; choose "
                          "another name for features made by another tool (e.g. "
                          f"{name}_imported)")


def _existing(folder: Path) -> dict[str, dict[str, Any]]:
    """Attributes of every cache file already in the stream's folder, by video id.

    Raises
    ------
    CacheError
        The folder holds a file that was not imported (computed by the project).
    """
    out = {}
    for path in sorted(folder.glob("*.h5")):
        try:
            attrs = read_attrs(path)
        except CacheError:
            continue  # unreadable: replaced if its video is imported now, refused by stage 2 otherwise
        if not is_imported(attrs):
            raise CacheError(f"{path}: {folder} holds features computed by the project, not imported "
                             "ones; choose another --name")
        out[path.stem] = {**attrs, "_path": path}
    return out


def find_sources(videos: Sequence[VideoFile], source_dir: Path, fmt: str) -> tuple[dict[str, Path], list[str]]:
    """Each video's feature file in ``source_dir`` (matched by stem), and the problems found.

    Files whose suffix is no feature format's (or not ``fmt``'s) are ignored.
    """
    if not source_dir.is_dir():
        raise InputError(f"--from {source_dir}: no such folder; name the folder of feature files")
    suffixes = [s for f, ss in SUFFIXES.items() if fmt in ("auto", f) for s in ss]
    by_stem = {stem: v for v in videos for stem in v.stems}
    found: dict[str, Path] = {}
    problems = []
    files = sorted(p for p in source_dir.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    for path in files:
        video = by_stem.get(path.stem)
        if video is None:
            problems.append(f"{path}: no video named {path.stem!r} among the videos of data.videos "
                            f"({_videos_spec(videos)}); rename the file after its video or add the video")
        elif video.video_id in found:
            problems.append(f"{found[video.video_id]} and {path}: two feature files for video "
                            f"{video.path.name}; keep one (or choose with --format)")
        else:
            found[video.video_id] = path
    for v in videos:
        if v.video_id not in found:
            problems.append(f"{v.path}: no feature file for this video in {source_dir} (expected "
                            f"{v.stems[0]}{'|'.join(suffixes)}); add it, or narrow data.videos "
                            "(--set data.videos=...) to the videos to import")
    return found, problems


def _videos_spec(videos: Sequence[VideoFile]) -> str:
    folders = sorted({str(v.path.parent) for v in videos})
    return ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")


def _raise_all(problems: list[str]) -> None:
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError(f"{len(problems)} problems, nothing imported: " + " | ".join(problems))


def expected_import(name: str, source: Source, h5_dataset: str | None) -> dict[str, Any]:
    """What a fresh import of ``source`` records (compared by :func:`.store.is_fresh`)."""
    fp = source.fingerprint
    return {"backbone": name, "video_size": int(fp["size"]), "video_mtime_ns": int(fp["mtime_ns"]),
            "video_sha256": str(fp["sha256"]), "source_sha256": source.sha256,
            "source_dataset": (h5_dataset or "") if source.fmt == "h5" else ""}


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the feature file ({exc.strerror}); check it is "
                         "readable") from None


@dataclass(frozen=True)
class _Checked:
    source: Source
    n_frames: int
    fps: float
    dim: int
    reason: str


def _validate(source: Source, h5_dataset: str | None, reason: str) -> _Checked:
    info = probe_video(source.video.path)
    features = read_features(source.path, source.fmt, h5_dataset)
    if features.shape[0] != info.n_frames:
        raise InputError(f"{source.path}: {features.shape[0]} rows of features but {source.video.path} "
                         f"has {info.n_frames} decoded frames; features must have one row per decoded "
                         "frame")
    return _Checked(source, info.n_frames, info.fps, int(features.shape[1]), reason)


def _check_consistent(name: str, checked: list[_Checked], existing: dict[str, dict[str, Any]],
                      tool: str) -> list[str]:
    """Problems: files of the stream with another number of features, or another tool."""
    if not checked:
        return []
    problems = []
    ref = checked[0]
    for c in checked[1:]:
        if c.dim != ref.dim:
            problems.append(f"{c.source.path}: {c.dim} features per frame but {ref.source.path} has "
                            f"{ref.dim}; every video of stream {name!r} needs the same features")
    replaced = {c.source.video.video_id for c in checked}
    for vid, attrs in existing.items():
        if vid in replaced:
            continue
        if int(attrs.get("dim", 0)) != ref.dim:
            problems.append(f"{attrs['_path']}: imported before with {attrs.get('dim')} features per "
                            f"frame, the new files have {ref.dim}; re-import its video too or delete it")
        elif attrs.get("tool") != tool:
            problems.append(f"{attrs['_path']}: imported before from tool {attrs.get('tool')!r}, not "
                            f"{tool!r}; use the same --tool for every video of stream {name!r}, or "
                            "re-import that video too")
    return problems


def import_features(cfg: Config, name: str, source_dir: str | Path, tool: str, fmt: str = "auto",
                    h5_dataset: str | None = None, overwrite: bool = False,
                    progress: bool = False) -> ImportSummary:
    """Import one feature file per video of ``cfg`` into ``<extract.cache>/<name>/``.

    Parameters
    ----------
    cfg
        The config: ``data.videos`` (the videos), ``extract.cache`` (where to write),
        ``extract.decode_workers`` (videos decoded at once while validating).
    name
        The stream name (a cache folder; what ``extract.backbones`` names to train on it).
    source_dir
        The folder of feature files.
    tool
        What made the features (free text, recorded as ``tool``).
    fmt
        ``auto`` (by suffix), ``npy``, ``h5`` or ``csv`` (only files of that format are read).
    h5_dataset
        For HDF5 files, the dataset to read (default: each file's only dataset).
    overwrite
        Re-import up-to-date files too.
    progress
        Show a progress bar while the videos are checked (decoded).

    Returns
    -------
    ImportSummary
        One result per video.

    Raises
    ------
    ConfigError
        A bad stream name or format.
    InputError
        Unmatched files or videos, or any file that cannot be imported (all reported
        together; nothing is written).
    CacheError, LockError
        The folder holds extracted files; another process writes into it.
    """
    check_name(name)
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected auto or one of {', '.join(FORMATS)}")
    if not tool.strip():
        raise ConfigError("--tool: name the tool that made the features (free text)")
    source_dir = Path(source_dir)
    folder = Path(cfg.extract.cache) / name
    existing = _existing(folder)
    videos = video_files(cfg.data.videos)
    found, problems = find_sources(videos, source_dir, fmt)
    sources = []
    for v in videos:
        path = found.get(v.video_id)
        if path is not None:
            sources.append(Source(v, path.absolute(), format_of(path), _sha256(path), video_fingerprint(v.path)))

    results: dict[str, ImportResult] = {}
    todo: list[tuple[Source, str]] = []
    for s in sources:
        target = cache_path(cfg.extract.cache, name, s.video.video_id)
        fresh, reason = is_fresh(target, expected_import(name, s, h5_dataset))
        if fresh and not overwrite:
            attrs = existing[s.video.video_id]
            results[s.video.video_id] = ImportResult(s.video.video_id, "up_to_date", int(attrs["n_frames"]),
                                                     int(attrs["dim"]), s.path, reason)
        else:
            todo.append((s, "--overwrite" if fresh else reason))
    checked = _validate_all(cfg, todo, h5_dataset, problems, progress)
    _raise_all(_check_consistent(name, checked, existing, tool))
    if checked:
        with acquire_lock(folder):
            remove_stale_temps(folder, any_host=True)  # we hold the lock: no writer of it is alive
            for c in checked:
                results[c.source.video.video_id] = _write(cfg, name, c, tool, h5_dataset)
    return ImportSummary(name, folder, [results[v.video_id] for v in videos])


def _validate_all(cfg: Config, todo: list[tuple[Source, str]], h5_dataset: str | None,
                  problems: list[str], progress: bool) -> list[_Checked]:
    """Every video to import decoded and its file checked; all problems (``problems``: those
    found before) in one InputError."""
    problems = list(problems)
    checked: list[_Checked] = []
    with ThreadPoolExecutor(max_workers=max(1, cfg.extract.decode_workers)) as pool:
        futures = [pool.submit(_validate, s, h5_dataset, reason) for s, reason in todo]
        for future in tqdm(futures, desc="checking videos", unit="video", disable=not progress or len(todo) < 2):
            try:
                checked.append(future.result())
            except InputError as exc:
                problems.append(str(exc))
    _raise_all(problems)
    return checked


def _write(cfg: Config, name: str, c: _Checked, tool: str, h5_dataset: str | None) -> ImportResult:
    """Write one video's cache file (the feature file read again, checked to be unchanged)."""
    s = c.source
    features = read_features(s.path, s.fmt, h5_dataset)
    if _sha256(s.path) != s.sha256 or features.shape != (c.n_frames, c.dim):
        raise InputError(f"{s.path}: changed while it was imported; run cache import again")
    expected = expected_import(name, s, h5_dataset)
    attrs = {"backbone": name, "weights": "imported", "input_size": 0, "crop": "", "pose_file": "",
             "pose_sha256": "", "precision": "", "video_path": str(s.video.path.absolute()),
             "fps": float(c.fps), "origin": ORIGIN_IMPORT, "tool": tool, "source": str(s.path),
             "source_format": s.fmt, **{k: expected[k] for k in (*FINGERPRINT_KEYS, "source_sha256",
                                                                  "source_dataset")}}
    target = cache_path(cfg.extract.cache, name, s.video.video_id)
    with CacheWriter(target, c.n_frames, c.dim, STORE_DTYPE, attrs) as writer:
        writer.write(features)
    log.debug("%s: %d frames x %d features from %s -> %s", s.video.video_id, c.n_frames, c.dim, s.path.name,
             target)
    return ImportResult(s.video.video_id, "imported", c.n_frames, c.dim, s.path, c.reason)


def imported_names(cache_roots: Sequence[str | Path], names: Sequence[str]) -> list[str]:
    """The names among ``names`` that are imported streams in any of ``cache_roots``.

    A registry backbone's name (or ``pose``) never is; another name is when its cache folder holds a
    file recorded as imported (``origin: import``).
    """
    from ..backbones import REGISTRY
    from .pose_stream import POSE_STREAM

    out = []
    for name in names:
        if name in REGISTRY or name == POSE_STREAM or name in out:
            continue
        for root in cache_roots:
            if any(_imported_file(p) for p in sorted((Path(root) / name).glob("*.h5"))):
                out.append(name)
                break
    return out


def _imported_file(path: Path) -> bool:
    try:
        return is_imported(read_attrs(path))
    except CacheError:
        return False


def check_imported(cache_root: str | Path, names: Sequence[str], videos: Sequence[VideoFile]) -> None:
    """Refuse (one InputError) when a video has no up-to-date imported features of a stream.

    Predict cannot compute imported features; this says which videos to import first.
    """
    problems = []
    for name in names:
        missing, stale = [], []
        for v in videos:
            path = cache_path(cache_root, name, v.video_id)
            fp = video_fingerprint(v.path)
            expected = {"backbone": name, "video_size": fp["size"], "video_mtime_ns": fp["mtime_ns"],
                        "video_sha256": fp["sha256"]}
            if not path.is_file():
                missing.append(v.path.name)
            elif not _imported_file(path) or not is_fresh(path, expected)[0]:
                stale.append(v.path.name)
        if missing or stale:
            which = "; ".join(part for part in (
                f"none for {', '.join(missing)}" if missing else "",
                f"out of date (the video changed, or not imported) for {', '.join(stale)}" if stale else "")
                if part)
            problems.append(f"{Path(cache_root) / name}: imported features {name!r}: {which}; predict "
                            f"cannot compute features made by another tool: run `mouse-pipeline cache "
                            f"import --name {name}` for these videos first (--set data.videos=...)")
    if problems:
        raise InputError(" | ".join(problems))
