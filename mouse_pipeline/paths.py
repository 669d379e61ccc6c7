"""Where a config's paths point: resolved against the config file's folder, checked at load.

Path keys
---------
``data.videos`` (a folder, a glob such as ``videos/*.mp4``, or one file), ``data.labels``,
``data.crop.pose``, ``extract.cache``, ``train.run``, and ``extract.weights`` when it names
a weights file rather than ``imagenet`` or ``random``.

Resolution (as in DeepLabCut's and SLEAP's project files)
----------------------------------------------------------
- A value written in a config file is relative to that file's folder, so
  ``mouse-pipeline extract --config /x/my.yaml`` means the same from any folder.
- A ``--set KEY=VALUE`` override on the command line is relative to the current
  directory, as any other command-line path.
- A key left out takes its default, relative to the current directory (as without
  ``--config``).

``~`` is the home folder. Resolved values are absolute and normalised lexically (``..``
removed, symbolic links kept as they are), so the ``config.yaml`` a run stores holds
absolute paths and ``predict --run`` finds the run's cache from any folder. Resolving
an already resolved value changes nothing.

Checks
------
:func:`check_paths` finds, before any work starts, the paths that cannot be what their key
needs: a folder the pipeline will create (``extract.cache``, ``train.run``) that is a file,
lies under a file, or is a symbolic link to nothing; a folder it reads
(``data.labels``, ``data.crop.pose``) that is a file. A folder that does not exist yet is
not a problem here (the stage that needs it says so).

Projects
--------
:func:`init_project` starts a project folder: ``config.yaml`` (the packaged, commented
default config, :func:`default_config_text`, with its paths set to the folders beside
it) and the folders ``videos/``, ``labels/``, ``pose/``, ``cache/`` and ``runs/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .fileio import write_text

PATH_KEYS = ("data.videos", "data.labels", "data.crop.pose", "extract.cache", "train.run",
             "extract.weights", "extract.pose_features.pose")
NAMED_WEIGHTS = ("imagenet", "random")  # extract.weights values that are not files
CREATED_FOLDERS = {"extract.cache": "the cache folder (created if missing)",
                   "train.run": "the run folder (created if missing)"}
PROJECT_FOLDERS = ("videos", "labels", "pose", "cache", "runs")
PROJECT_CONFIG = "config.yaml"
#: Lines of the default config that init_project changes: the paths of a new project.
_PROJECT_LINES = (("  videos: data/videos\n", "  videos: videos\n"),
                  ("  labels: data/labels\n", "  labels: labels\n"),
                  ("    pose: null\n", "    pose: pose\n"))
_PROJECT_HEADER = """\
# A mouse-pipeline project, started by `mouse-pipeline init`. Paths below are relative to
# this file's folder: videos/ (your videos), labels/ (one label file per video,
# <video>.csv), pose/ (DeepLabCut outputs, used with data.crop.mode: pose), cache/
# (embeddings) and runs/ (trained runs).
"""
READ_FOLDERS = {"data.labels": "the folder of label files (one <video>.csv per video)",
                "data.crop.pose": "the folder of DeepLabCut files (one per video)",
                "extract.pose_features.pose": "the folder of pose files (one per video)"}


def is_path_value(key: str, value: Any) -> bool:
    """Whether ``value`` of dotted ``key`` is a path to resolve (a non-empty string, not a
    named weights setting)."""
    if not isinstance(value, str) or not value:
        return False
    return not (key == "extract.weights" and value in NAMED_WEIGHTS)


def resolve_path(value: str, base: str | Path) -> str:
    """``value`` (``~`` expanded) made absolute against the folder ``base``, normalised.

    Glob characters are kept, so ``videos/*.mp4`` becomes ``<base>/videos/*.mp4``.
    """
    return os.path.normpath(os.path.join(os.path.abspath(base), os.path.expanduser(value)))


def resolve_paths(raw: Any, base: str | Path) -> None:
    """Resolve, in place, every path key's value in a raw config mapping against ``base``.

    Values that are not strings are left for the validator to report.
    """
    for key in PATH_KEYS:
        *sections, name = key.split(".")
        node = raw
        for part in sections:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and is_path_value(key, node.get(name)):
            node[name] = resolve_path(node[name], base)


def resolve_override(key: str, value: Any, base: str | Path) -> Any:
    """The value of a ``--set key=value`` override with its paths resolved against ``base``.

    ``key`` may name a path key (``extract.cache=c``) or a section holding some
    (``data.crop={mode: pose, pose: p}``).
    """
    nested: Any = value
    parts = key.split(".")
    for part in reversed(parts):
        nested = {part: nested}
    resolve_paths(nested, base)
    for part in parts:
        nested = nested[part]
    return nested


def check_paths(values: Mapping[str, str | None]) -> Iterator[tuple[str, str]]:
    """The problems of resolved path values, as ``(key, "what is wrong; what to do")``.

    Parameters
    ----------
    values
        Dotted path key -> its resolved value (None when unset), for the keys of
        :data:`PATH_KEYS` to check.
    """
    for key, value in values.items():
        if not is_path_value(key, value):
            continue
        if "\0" in value:
            yield key, f"{value!r} contains a NUL character, which no path can hold; fix the value"
        elif key in CREATED_FOLDERS or key in READ_FOLDERS:
            problem, missing = _folder_problem(value, create=key in CREATED_FOLDERS)
            fix = (f"create {missing} or set {key} to another folder" if missing else
                   f"set {key} to {CREATED_FOLDERS.get(key) or READ_FOLDERS[key]}")
            if problem:
                yield key, f"{problem}; {fix}"


def check_output_folder(path: str | Path, option: str) -> None:
    """InputError when ``path`` cannot be (or become) a folder: a file, or under one, or a
    dangling symbolic link. For folders named on the command line (``--run``, ``--out``)."""
    problem, _ = _folder_problem(os.path.abspath(path), create=True)
    if problem:
        raise InputError(f"{option} {path}: {problem}; choose another folder")


def _folder_problem(path: str, create: bool) -> tuple[str, str]:
    """What stops ``path`` from being a folder (``create``: or from becoming one with
    ``mkdir -p``), and the missing target of a dangling symbolic link; ``("", "")`` if nothing.
    """
    for here in (Path(path), *Path(path).parents) if create else (Path(path),):
        if not os.path.lexists(here):
            continue
        if os.path.islink(here) and not os.path.exists(here):
            target = os.path.normpath(os.path.join(here.parent, os.readlink(here)))
            return f"{here} is a symbolic link to {target}, which does not exist", target
        if os.path.isdir(here):
            break
        if str(here) == path:
            return f"{path} is a file, not a folder", ""
        return f"{path} is under {here}, which is a file, not a folder", ""
    return "", ""


def default_config_text() -> str:
    """The packaged default config (``mouse_pipeline/configs/default.yaml``): every key,
    its default and a comment."""
    return resources.files("mouse_pipeline").joinpath("configs", "default.yaml").read_text(encoding="utf-8")


def project_config_text() -> str:
    """The default config with a new project's paths (``videos``, ``labels``, ``pose``)."""
    text = default_config_text()
    for old, new in _PROJECT_LINES:
        if text.count(old) != 1:  # pragma: no cover - the packaged file changed; a test catches it
            raise RuntimeError(f"the packaged default config has not exactly one {old.strip()!r} line")
        text = text.replace(old, new)
    return _PROJECT_HEADER + text


def init_project(folder: str | Path, force: bool = False) -> Path:
    """Write ``folder/config.yaml`` and create the project's folders; return the config's path.

    Parameters
    ----------
    folder
        The project folder (created if missing).
    force
        Replace an existing ``config.yaml`` (the folders and their files are kept).

    Raises
    ------
    ConfigError
        ``config.yaml`` exists (without ``force``), or a folder cannot be made where needed;
        nothing is written then.
    """
    folder = Path(folder)
    target = folder / PROJECT_CONFIG
    for path in (folder, *(folder / name for name in PROJECT_FOLDERS)):
        problem, _ = _folder_problem(str(path), create=True)
        if problem:
            raise ConfigError(f"{path}: cannot be a folder of the project ({problem}); move that "
                              "away or choose another project folder")
    if os.path.lexists(target) and (target.is_dir() or not force):
        what = "is a folder" if target.is_dir() else "already exists"
        hint = "move it away" if target.is_dir() else "edit it, or pass --force to replace it with the default config"
        raise ConfigError(f"{target}: {what}; {hint}")
    text = project_config_text()
    try:
        for name in PROJECT_FOLDERS:
            (folder / name).mkdir(parents=True, exist_ok=True)
        write_text(target, text)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the project there ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    return target
