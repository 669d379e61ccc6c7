"""Typed, frozen, validated configuration.

A config is a YAML file with four sections, ``data``, ``extract``, ``train`` and
``postprocess``, each mapped onto a frozen dataclass below. Missing keys take the defaults
documented in ``configs/default.yaml`` (packaged as ``mouse_pipeline/configs/default.yaml``).

Reading
-------
The file is read by a ``yaml.SafeLoader`` subclass that also refuses what ``safe_load``
lets through silently or slowly: a key given twice in one mapping at any depth (a second
``train:`` section would replace the first), aliases (``*name``: nested, a few of them
expand into billions of values and hang every command; counting them would not help,
since two per level over 30 levels is already 2**30 values, and no config needs them),
nesting deeper than :data:`MAX_DEPTH` levels and files over :data:`MAX_CONFIG_BYTES`.
Each is one line naming the file and the line.

Validation
----------
Unknown keys, wrong types, values out of range (every number has bounds and floats must be
finite), settings whose memory need alone is absurd (:data:`MEMORY_LIMIT_GB`) and
inconsistent combinations are all collected and raised as one :class:`ConfigError` whose
message names the file and, per problem, the dotted key, what was expected and what came:
``<file>: key 'k': ...`` for one problem, ``<file>: N problems: (1) key 'a': ...; (2) ...``
(one line) for several.

Paths
-----
Path keys are resolved by :mod:`mouse_pipeline.paths`: relative to the config file's folder
for values in the file, to the current directory for ``--set`` overrides and defaults. A
loaded :class:`Config` holds absolute paths; ``Config()`` itself holds the schema defaults
as written. ``load_config`` also checks the paths (:func:`~mouse_pipeline.paths.check_paths`).

``load_config(path, overrides)`` applies ``--set KEY=VALUE`` overrides (dotted key,
value parsed as YAML) on top of the file before validation, so an override is checked
exactly like a value written in the file.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .fileio import write_text
from .paths import (
    PATH_KEYS,
    check_paths,
    is_path_value,
    resolve_override,
    resolve_path,
    resolve_paths,
)

# --------------------------------------------------------------------------- limits

MAX_CONFIG_BYTES = 1_000_000  # a config is a few kB; anything this large is the wrong file
MAX_DEPTH = 20  # nesting levels of the YAML (a config needs 4)
MAX_SEED = 2**31 - 1  # head seeds add up to 1000 * folds; numpy takes seeds below 2**32
MAX_FRAMES = 100_000  # window lengths, strides, dilations, post-processing lengths
MAX_PIXELS = 16_384  # sides and coordinates of crops
MAX_TRIALS = 1000  # hyperparameter trials (the grid is enumerated even for random search)
MAX_CANDIDATES = 100  # candidate values of one search key
MAX_PROBLEMS_SHOWN = 20  # problems listed in one error message
#: Settings whose memory need, estimated from below, exceeds this are refused at load time
#: (a batch of windows, decoded frames waiting for the backbone, crops, model weights).
MEMORY_LIMIT_GB = 16.0
MAX_EMBEDDING_DIM = 2048  # the widest backbone embedding (resnet50v2, resnet50)
INFERENCE_WINDOWS = 64  # windows per inference batch (sequences.inference.BATCH_WINDOWS)
LARGEST_INPUT = 299  # the largest default input side (inception_resnet_v2)

# --------------------------------------------------------------------------- schema


def _f(default: Any = dataclasses.MISSING, *, min: float | None = None, max: float | None = None,
       factory: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A dataclass field with optional numeric bounds (inclusive) kept in its metadata.

    On a list field the bounds apply to each element.
    """
    meta = {"min": min, "max": max, "help": help}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CropConfig:
    mode: Literal["none", "box", "pose"] = "none"
    box: tuple[int, int, int, int] | None = _f(None, min=0, max=MAX_PIXELS)
    pose: str | None = None
    bodypart: str = "midbody"
    size: int = _f(160, min=8, max=4096)
    min_likelihood: float = _f(0.6, min=0.0, max=1.0)


@dataclass(frozen=True)
class DataConfig:
    videos: str = "data/videos"
    labels: str | None = "data/labels"
    label_format: Literal["thesis", "deepethogram", "boris_events", "boris_aggregated"] = "thesis"
    label_columns: dict[str, str] = _f(factory=dict)
    behaviors: tuple[str, ...] = ("grooming", "mid_rearing", "wall_rearing")
    fps: float | None = _f(None, min=0.001, max=10_000)
    max_frame_mismatch: int = _f(0, min=0, max=1_000_000_000)
    crop: CropConfig = _f(factory=CropConfig)


@dataclass(frozen=True)
class ExtractConfig:
    cache: str = "cache"
    backbones: tuple[str, ...] = ("resnet50v2",)
    weights: str = "imagenet"
    input_size: int | None = _f(None, min=32, max=1024)
    batch_size: int = _f(32, min=1, max=4096)
    dtype: Literal["float32", "float16"] = "float32"
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    jit_compile: bool = False
    queue_batches: int = _f(4, min=1, max=64)
    decode_workers: int = _f(1, min=1, max=32)
    frame_threads: int = _f(1, min=1, max=32)


@dataclass(frozen=True)
class WindowConfig:
    length: int = _f(64, min=2, max=MAX_FRAMES)
    stride: int = _f(32, min=1, max=MAX_FRAMES)
    inference_stride: int | None = _f(None, min=1, max=MAX_FRAMES)


@dataclass(frozen=True)
class FoldsConfig:
    scheme: Literal["leave_one_video_out", "group_kfold", "fixed"] = "leave_one_video_out"
    k: int = _f(5, min=2, max=100_000)
    n_val: int = _f(1, min=1, max=100_000)
    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


@dataclass(frozen=True)
class LSTMConfig:
    units: int = _f(64, min=1, max=4096)
    layers: int = _f(1, min=1, max=3)
    bidirectional: bool = True
    dropout: float = _f(0.2, min=0.0, max=0.9)


@dataclass(frozen=True)
class TCNConfig:
    filters: int = _f(64, min=1, max=4096)
    kernel_size: int = _f(3, min=2, max=1024)
    dilations: tuple[int, ...] = _f((1, 2, 4, 8), min=1, max=MAX_FRAMES)
    stacks: int = _f(1, min=1, max=4)
    norm: Literal["none", "batch", "layer"] = "none"
    causal: bool = False
    dropout: float = _f(0.1, min=0.0, max=0.9)


@dataclass(frozen=True)
class SearchConfig:
    method: Literal["grid", "random"] = "grid"
    n_trials: int = _f(4, min=1, max=MAX_TRIALS)
    space: dict[str, tuple[Any, ...]] = _f(factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    run: str = "runs/default"
    models: tuple[Literal["lstm", "tcn"], ...] = ("lstm", "tcn")
    heads: Literal["joint", "per_behavior"] = "joint"
    seed: int = _f(0, min=0, max=MAX_SEED)
    workers: int = _f(1, min=1, max=256)
    memory_gb: float = _f(8.0, min=0.0, max=1e6)
    epochs: int = _f(30, min=1, max=100_000)
    patience: int = _f(5, min=1, max=100_000)
    batch_size: int = _f(16, min=1, max=4096)
    learning_rate: float = _f(1e-3, min=1e-7, max=1.0)
    input_dropout: float = _f(0.1, min=0.0, max=0.9)
    window: WindowConfig = _f(factory=WindowConfig)
    folds: FoldsConfig = _f(factory=FoldsConfig)
    lstm: LSTMConfig = _f(factory=LSTMConfig)
    tcn: TCNConfig = _f(factory=TCNConfig)
    search: SearchConfig = _f(factory=SearchConfig)


@dataclass(frozen=True)
class PostprocessConfig:
    max_gap: tuple[int, ...] = _f((0, 2, 5), min=0, max=MAX_FRAMES)
    min_len: tuple[int, ...] = _f((0, 3, 5), min=0, max=MAX_FRAMES)


@dataclass(frozen=True)
class Config:
    data: DataConfig = _f(factory=DataConfig)
    extract: ExtractConfig = _f(factory=ExtractConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    postprocess: PostprocessConfig = _f(factory=PostprocessConfig)
    source: str = field(default="<defaults>", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-able dict of every value (the resolved config)."""
        out = _to_plain(self)
        out.pop("source", None)
        return out

    def replace(self, **overrides: Any) -> Config:
        """A copy with dotted-key overrides applied and validated again.

        A relative path among the overrides is relative to the current directory.
        """
        raw = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(raw, key, value, self.source)
        return config_from_dict(raw, self.source)


# --------------------------------------------------------------------------- reading YAML


class _YAMLProblem(yaml.YAMLError):
    """What :class:`_StrictLoader` refuses, with the (1-based) line it is on."""

    def __init__(self, text: str, mark: yaml.Mark) -> None:
        super().__init__(text)
        self.text, self.line = text, mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases, duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _YAMLProblem(
                f"YAML alias '*{event.anchor}': aliases are not accepted in a config (a few "
                "nested ones expand into billions of values); write the value out in full",
                event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YAMLProblem(f"nested more than {MAX_DEPTH} levels deep; a config has "
                                   "sections of keys, a few levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._check_duplicates(node, "")
        return self.construct_document(node)

    def _check_duplicates(self, node: yaml.Node, where: str) -> None:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_duplicates(item, f"{where}[{i}]")
        if not isinstance(node, yaml.MappingNode):
            return
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: {...}` merges keys on purpose
                self._check_duplicates(value_node, where)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as key is refused by the constructor
            key = self.construct_object(key_node)
            dotted = f"{where}.{key}" if where else str(key)
            line = key_node.start_mark.line + 1
            if key in first:
                raise _YAMLProblem(f"duplicate key '{dotted}' (first at line {first[key]}); YAML "
                                   "would silently keep only the last one: merge them or delete one",
                                   key_node.start_mark)
            first[key] = line
            self._check_duplicates(value_node, dotted)


def _parse_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_config_file(p: Path) -> dict[str, Any]:
    """The raw mapping of a config file; ConfigError naming the file (and line) otherwise."""
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist"
        raise ConfigError(f"{p}: config file {what}; pass an existing YAML file to --config")
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: {size / 1e6:.1f} MB, more than a config file can be "
                              f"({MAX_CONFIG_BYTES / 1e6:g} MB); pass the YAML config to --config")
        raw = _parse_yaml(p.read_text(encoding="utf-8"))
    except _YAMLProblem as exc:
        raise ConfigError(f"{p}: line {exc.line}: {exc.text}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {_tname(raw)}")
    return raw


def _parse_override(item: str) -> tuple[str, Any]:
    """``(dotted key, YAML value)`` of a ``--set KEY=VALUE`` string."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set extract.batch_size=64")
    try:
        return key.strip(), _parse_yaml(text) if text.strip() else None
    except _YAMLProblem as exc:
        raise ConfigError(f"--set {item!r}: {exc.text}") from None
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load and validate a config file with ``--set`` style overrides.

    Parameters
    ----------
    path
        YAML file, or None for the built-in defaults. Relative paths in it are relative
        to its folder.
    overrides
        ``KEY=VALUE`` strings; KEY is dotted (``extract.batch_size``), VALUE is YAML. A
        relative path here is relative to the current directory.

    Returns
    -------
    Config
        The frozen, validated config, with absolute paths.

    Raises
    ------
    ConfigError
        Every problem of the file, its overrides and its paths, in one message.
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_config_file(Path(path))
        resolve_paths(raw, Path(os.path.abspath(path)).parent)
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, resolve_override(key, value, _cwd()), source)
    cfg, problems = _validate(raw, source)
    paths = {key: _get_dotted(cfg, key) for key in PATH_KEYS if problems.clean(key)}
    for key, text in check_paths(paths):
        problems.add(key, text)
    problems.raise_if_any()
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain dict (e.g. a run's resolved config) into a :class:`Config`.

    Absolute paths are kept as they are; a relative one is taken relative to the current
    directory (a config written before paths were stored absolute). ``raw`` is not changed.
    """
    cfg, problems = _validate(raw, source)
    problems.raise_if_any()
    return cfg


def _validate(raw: Any, source: str) -> tuple[Config, _Problems]:
    """The config built from ``raw`` (defaults where a value is wrong) and its problems."""
    problems = _Problems(source)
    cfg = _build(Config, raw, "", problems, skip=frozenset({"source"}))
    cfg = dataclasses.replace(cfg, source=source)
    for key in PATH_KEYS:
        value = _get_dotted(cfg, key)
        if is_path_value(key, value):
            cfg = _replace_dotted(cfg, key.split("."), resolve_path(value, _cwd()))
    _cross_checks(cfg, problems)
    return cfg, problems


def _cwd() -> str:
    """The current folder, which relative ``--set`` paths and defaults are relative to."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise ConfigError("the current folder was deleted, and relative paths are relative to it; "
                          "cd into an existing folder") from None


def _get_dotted(obj: Any, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), obj)


def _replace_dotted(obj: Any, parts: list[str], value: Any) -> Any:
    if len(parts) > 1:
        value = _replace_dotted(getattr(obj, parts[0]), parts[1:], value)
    return dataclasses.replace(obj, **{parts[0]: value})


def _set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: key '{'.'.join(parts[: i + 1])}' is not a section; cannot set '{key}'")
        node = child
    node[parts[-1]] = value


class _Problems:
    """The problems of one config, collected so that all of them are reported at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []
        self.keys: set[str] = set()

    def add(self, key: str, text: str) -> None:
        """Record ``key '<key>': <text>``."""
        self.note(key, f"key '{key}': {text}")

    def note(self, key: str, message: str) -> None:
        """Record a problem of ``key`` worded as ``message``."""
        self.items.append(message)
        self.keys.add(key)

    def clean(self, *keys: str) -> bool:
        """Whether none of ``keys``, no section above one and no key below one had a problem."""
        return not any(_related(key, bad) for key in keys for bad in self.keys)

    def raise_if_any(self) -> None:
        """Raise one ConfigError listing every problem (on one line), if there are any."""
        if not self.items:
            return
        if len(self.items) == 1:
            raise ConfigError(f"{self.source}: {self.items[0]}")
        shown = "; ".join(f"({i}) {text}" for i, text in enumerate(self.items[:MAX_PROBLEMS_SHOWN], 1))
        more = len(self.items) - MAX_PROBLEMS_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        raise ConfigError(f"{self.source}: {len(self.items)} problems: {shown}{tail}")


def _related(key: str, other: str) -> bool:
    """Whether dotted ``key`` is ``other``, lies inside it, or holds it."""
    return any(a == b or a.startswith(b + ".") or a.startswith(b + "[")
               for a, b in ((key, other), (other, key)))


# --------------------------------------------------------------------------- checks across keys


def _cross_checks(cfg: Config, problems: _Problems) -> None:
    """Problems of combinations of keys; a check is skipped when one of its keys is already wrong."""
    ok, add = problems.clean, problems.add
    crop = cfg.data.crop
    if ok("data.crop.mode", "data.crop.box") and crop.mode == "box" and crop.box is None:
        add("data.crop.box", "expected [x, y, width, height] when data.crop.mode is 'box', got null")
    if ok("data.crop.box") and crop.box is not None and (crop.box[2] <= 0 or crop.box[3] <= 0):
        add("data.crop.box", f"expected non-negative x, y and positive width, height, got {list(crop.box)}")
    if ok("data.crop.mode", "data.crop.pose") and crop.mode == "pose" and not crop.pose:
        add("data.crop.pose", "expected the folder of DeepLabCut files when data.crop.mode is 'pose', got null")
    for key, names, what in (("data.behaviors", cfg.data.behaviors, "behaviour name"),
                             ("extract.backbones", cfg.extract.backbones, "backbone name"),
                             ("train.models", cfg.train.models, "of lstm, tcn")):
        if ok(key) and not names:
            add(key, f"expected at least one {what}, got an empty list")
    if ok("data.behaviors") and len(set(cfg.data.behaviors)) != len(cfg.data.behaviors):
        add("data.behaviors", f"names must be unique, got {list(cfg.data.behaviors)}")
    w = cfg.train.window
    if ok("train.window") and w.stride > w.length:
        add("train.window.stride", f"expected at most train.window.length ({w.length}) so every "
            f"frame is in a window, got {w.stride}")
    if ok("train.window") and w.inference_stride is not None and w.inference_stride > w.length:
        add("train.window.inference_stride", f"expected at most train.window.length ({w.length}), "
            f"got {w.inference_stride}")
    if ok("train.tcn.dilations") and not cfg.train.tcn.dilations:
        add("train.tcn.dilations", "expected a non-empty list of positive integers, got []")
    for name in ("max_gap", "min_len"):
        if ok(f"postprocess.{name}") and not getattr(cfg.postprocess, name):
            add(f"postprocess.{name}", "expected a non-empty list of integers >= 0, got []")
    f = cfg.train.folds
    if ok("train.folds") and f.scheme == "fixed" and (not f.train or not f.test):
        add("train.folds", "scheme 'fixed' needs both train.folds.train and train.folds.test video lists")
    _memory_checks(cfg, problems)
    _search_checks(cfg, problems)


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def _memory_checks(cfg: Config, problems: _Problems) -> None:
    """Refuse settings whose memory need, counted from below, exceeds :data:`MEMORY_LIMIT_GB`."""
    limit, ok, t, e, crop = MEMORY_LIMIT_GB * 1e9, problems.clean, cfg.train, cfg.extract, cfg.data.crop
    over = f"more than the {MEMORY_LIMIT_GB:g} GB a config may ask for"
    if ok("train.window.length", "train.batch_size"):
        windows = max(t.batch_size, INFERENCE_WINDOWS)
        need = t.window.length * windows * MAX_EMBEDDING_DIM * 4
        if need > limit:
            problems.add("train.window.length", (
                f"{t.window.length} frames: one batch of windows would take {_gb(need)} (length "
                f"x {windows} windows (the larger of train.batch_size and an inference batch's "
                f"{INFERENCE_WINDOWS}) x {MAX_EMBEDDING_DIM}-d embeddings x 4 bytes), {over}; "
                "use a shorter train.window.length or a smaller train.batch_size"))
    if ok("extract"):
        side = e.input_size or LARGEST_INPUT
        frames = e.batch_size * (e.queue_batches + 1) * e.decode_workers
        need = frames * side * side * 3 + e.batch_size * side * side * 3 * 4
        if need > limit:
            problems.add("extract.batch_size", (
                f"{e.batch_size}: the decoded frames waiting for the backbone would take {_gb(need)} "
                f"({frames} frames = batch_size x (queue_batches + 1) x decode_workers, at {side} "
                f"x {side} px x 3 bytes, plus one float32 batch), {over}; lower "
                "extract.batch_size, extract.queue_batches or extract.decode_workers"))
    if ok("extract", "data.crop"):
        width, height = ((crop.size, crop.size) if crop.mode == "pose" else
                         (crop.box[2], crop.box[3]) if crop.mode == "box" and crop.box else (0, 0))
        crops = e.decode_workers * (2 * e.frame_threads + 1)
        need = crops * width * height * 3
        if need > limit:
            key = "data.crop.size" if crop.mode == "pose" else "data.crop.box"
            problems.add(key, (
                f"{crops} crops of {width} x {height} px are made at once (2 x extract.frame_threads "
                f"+ 1 per decoding video) and would take {_gb(need)}, {over}; use a smaller crop or "
                "fewer extract.frame_threads"))
    for model, key, weights, smaller in _model_weights(cfg):
        need = weights * 16  # float32 weights, their gradients and Adam's two moments
        if ok(f"train.{model}") and need > limit:
            problems.add(key, (
                f"the {model.upper()} would have {weights:,.0f} weights, which with gradients and "
                f"Adam's moments take {_gb(need)}, {over}; use {smaller}"))


def _model_weights(cfg: Config) -> list[tuple[str, str, float, str]]:
    """``(model, key, weights, how to have fewer)``: a lower bound of each configured
    model's weight count (embeddings of :data:`MAX_EMBEDDING_DIM`)."""
    t, dim, out = cfg.train, MAX_EMBEDDING_DIM, []
    if "lstm" in t.models:
        directions, n_in, total = 2 if t.lstm.bidirectional else 1, dim, 0
        for layer in range(t.lstm.layers):
            units = max(1, t.lstm.units // 2**layer)
            total += directions * 4 * units * (n_in + units + 1)
            n_in = directions * units
        out.append(("lstm", "train.lstm.units", float(total), "fewer train.lstm.units or layers"))
    if "tcn" in t.models:
        k, filters = t.tcn.kernel_size, t.tcn.filters
        blocks = t.tcn.stacks * len(t.tcn.dilations)
        total = k * dim * filters + max(0, 2 * blocks - 1) * k * filters * filters
        out.append(("tcn", "train.tcn.filters", float(total),
                    "fewer train.tcn.filters, a smaller kernel_size or fewer dilations or stacks"))
    return out


def _search_checks(cfg: Config, problems: _Problems) -> None:
    """Each candidate of ``train.search.space`` must make a valid config; the grid must be small."""
    space = cfg.train.search.space
    if not space or not problems.clean("train.search.space"):
        return
    base = cfg.to_dict()
    base["train"]["search"]["space"] = {}
    known = set(_validate(base, cfg.source)[1].items)
    sizes = []
    for key, values in space.items():
        where = f"train.search.space.{key}"
        if not values:
            problems.add(where, "expected a non-empty list of candidate values")
            continue
        if len(values) > MAX_CANDIDATES:
            problems.add(where, f"expected at most {MAX_CANDIDATES} candidate values, got {len(values)}")
            continue
        sizes.append(len(values))
        for value in values:
            raw = copy.deepcopy(base)
            try:
                _set_dotted(raw, f"train.{key}", value, cfg.source)
            except ConfigError:
                problems.add(where, f"'{key}' is not a key of the train section")
                break
            new = [text for text in _validate(raw, cfg.source)[1].items if text not in known]
            if new:
                problems.add(where, f"a candidate value is invalid: {_short(value)} ({'; '.join(new)})")
    if math.prod(sizes) > MAX_TRIALS:
        problems.add("train.search.space", (
            f"{' x '.join(map(str, sizes))} = {math.prod(sizes):,} combinations of candidate values, "
            f"more than the {MAX_TRIALS} trials a search may have; give fewer candidates"))


# --------------------------------------------------------------------------- validation

_INVALID = object()  # what _convert returns for a value it recorded a problem for
#: Numbers YAML 1.1 (PyYAML) reads as text: an exponent without a dot or without its sign.
_EXPONENT = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)[eE][-+]?\d+")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _tname(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {_short(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        inner = " or ".join(_describe(a) for a in args)
        return f"{inner} or null" if len(args) < len(get_args(tp)) else inner
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            typing.Any: "any value"}.get(tp, str(tp))


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    return get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def _build(cls: type, raw: Any, prefix: str, problems: _Problems, skip: frozenset[str] = frozenset()) -> Any:
    """An instance of the section ``cls`` from ``raw``; a wrong value keeps its default."""
    where = prefix.rstrip(".") or "top level"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add(where, f"expected a mapping (section), got {_tname(raw)}")
        return cls()
    hints, all_fields = _fields(cls)
    fields = {name: f for name, f in all_fields.items() if name not in skip}
    for key in raw:
        if key not in fields:
            problems.note(f"{prefix}{key}", f"unknown key '{prefix}{key}'; known keys here: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            value = _convert(hints[name], raw[name], f"{prefix}{name}", problems, f.metadata)
            if value is not _INVALID:
                kwargs[name] = value
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str, problems: _Problems, meta: Any = None) -> Any:
    """``value`` checked against the type ``tp`` (and ``meta``'s bounds), or ``_INVALID``."""

    def bad() -> Any:
        hint = ""
        if tp in (int, float) and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            number = float(value)
            hint = f" (YAML reads {value} as text; write {int(number) if tp is int else number!r})"
        problems.add(key, f"expected {_describe(tp)}, got {_tname(value)}{hint}")
        return _INVALID

    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".", problems)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            return None if type(None) in args else bad()
        (inner,) = [a for a in args if a is not type(None)]  # the schema has only X | None
        return _convert(inner, value, key, problems, meta)
    if origin is Literal:
        return value if not isinstance(value, bool) and value in get_args(tp) else bad()
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            return bad()
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(value) != len(args):
            return bad()
        items = tuple(_convert(a, v, f"{key}[{i}]", problems, meta) for i, (a, v) in enumerate(zip(args, value, strict=True)))
        return _INVALID if _INVALID in items else items
    if origin is dict:
        if not isinstance(value, dict):
            return bad()
        kt, vt = get_args(tp)
        pairs = [(_convert(kt, k, key, problems), _convert(vt, v, f"{key}.{k}", problems)) for k, v in value.items()]
        return _INVALID if any(_INVALID in pair for pair in pairs) else dict(pairs)
    if tp is typing.Any:
        return value
    if tp is bool:
        return value if isinstance(value, bool) else bad()
    if tp is str:
        return value if isinstance(value, str) and value else bad()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and isinstance(value, float)):
        return bad()
    if tp is int:
        return _in_range(tp, value, key, problems, meta)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        problems.add(key, f"expected a finite number{_range_text(meta)}, got {_short(value)}")
        return _INVALID
    return _in_range(tp, number, key, problems, meta)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range_text(meta: Any) -> str:
    lo, hi = (meta.get("min"), meta.get("max")) if meta else (None, None)
    if lo is None and hi is None:
        return ""
    if hi is None or lo is None:
        return f" >= {_num(lo)}" if hi is None else f" <= {_num(hi)}"
    return f" between {_num(lo)} and {_num(hi)}"


def _in_range(tp: Any, number: float, key: str, problems: _Problems, meta: Any) -> Any:
    """``number`` when within the field's ``min``/``max`` (inclusive), else ``_INVALID``."""
    lo, hi = (meta.get("min"), meta.get("max")) if meta else (None, None)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        problems.add(key, f"value out of range: expected {_describe(tp)}{_range_text(meta)}, got {_short(number)}")
        return _INVALID
    return number


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (``runs/<name>/config.yaml``)."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # a killed run leaves no half config
