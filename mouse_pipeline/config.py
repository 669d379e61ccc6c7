"""Typed, frozen, validated configuration.

A config is a YAML file (read with ``yaml.safe_load``) with four sections, ``data``,
``extract``, ``train`` and ``postprocess``, each mapped onto a frozen dataclass below.
Missing keys take the defaults documented in ``configs/default.yaml``; unknown keys,
wrong types and out-of-range values are rejected with a :class:`ConfigError` whose
message names the file, the dotted key, what was expected and what came.

``load_config(path, overrides)`` applies ``--set KEY=VALUE`` overrides (dotted key,
value parsed as YAML) on top of the file before validation, so an override is checked
exactly like a value written in the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .fileio import write_text

# --------------------------------------------------------------------------- schema


def _f(default: Any = dataclasses.MISSING, *, min: float | None = None, max: float | None = None,
       factory: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A dataclass field with optional numeric bounds (inclusive) kept in its metadata."""
    meta = {"min": min, "max": max, "help": help}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CropConfig:
    mode: Literal["none", "box", "pose"] = "none"
    box: tuple[int, int, int, int] | None = None
    pose: str | None = None
    bodypart: str = "midbody"
    size: int = _f(160, min=8)
    min_likelihood: float = _f(0.6, min=0.0, max=1.0)


@dataclass(frozen=True)
class DataConfig:
    videos: str = "data/videos"
    labels: str | None = "data/labels"
    label_format: Literal["thesis", "deepethogram", "boris_events", "boris_aggregated"] = "thesis"
    label_columns: dict[str, str] = _f(factory=dict)
    behaviors: tuple[str, ...] = ("grooming", "mid_rearing", "wall_rearing")
    fps: float | None = _f(None, min=0.001)
    max_frame_mismatch: int = _f(0, min=0)
    crop: CropConfig = _f(factory=CropConfig)


@dataclass(frozen=True)
class ExtractConfig:
    cache: str = "cache"
    backbones: tuple[str, ...] = ("resnet50v2",)
    weights: str = "imagenet"
    input_size: int | None = _f(None, min=32, max=1024)
    batch_size: int = _f(32, min=1, max=4096)
    dtype: Literal["float32", "float16"] = "float32"
    precision: Literal["float32", "bfloat16", "float16"] = "float32"
    jit_compile: bool = False
    queue_batches: int = _f(4, min=1, max=64)
    decode_workers: int = _f(1, min=1, max=32)
    frame_threads: int = _f(1, min=1, max=32)


@dataclass(frozen=True)
class WindowConfig:
    length: int = _f(64, min=2)
    stride: int = _f(32, min=1)
    inference_stride: int | None = _f(None, min=1)


@dataclass(frozen=True)
class FoldsConfig:
    scheme: Literal["leave_one_video_out", "group_kfold", "fixed"] = "leave_one_video_out"
    k: int = _f(5, min=2)
    n_val: int = _f(1, min=1)
    train: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


@dataclass(frozen=True)
class LSTMConfig:
    units: int = _f(64, min=1)
    layers: int = _f(1, min=1, max=3)
    bidirectional: bool = True
    dropout: float = _f(0.2, min=0.0, max=0.9)


@dataclass(frozen=True)
class TCNConfig:
    filters: int = _f(64, min=1)
    kernel_size: int = _f(3, min=2)
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    stacks: int = _f(1, min=1, max=4)
    norm: Literal["none", "batch", "layer"] = "none"
    causal: bool = False
    dropout: float = _f(0.1, min=0.0, max=0.9)


@dataclass(frozen=True)
class SearchConfig:
    method: Literal["grid", "random"] = "grid"
    n_trials: int = _f(4, min=1)
    space: dict[str, tuple[Any, ...]] = _f(factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    run: str = "runs/default"
    models: tuple[Literal["lstm", "tcn"], ...] = ("lstm", "tcn")
    heads: Literal["joint", "per_behavior"] = "joint"
    seed: int = 0
    workers: int = _f(1, min=1, max=256)
    memory_gb: float = _f(8.0, min=0.0, max=1e6)
    epochs: int = _f(30, min=1)
    patience: int = _f(5, min=1)
    batch_size: int = _f(16, min=1)
    learning_rate: float = _f(1e-3, min=1e-7, max=1.0)
    input_dropout: float = _f(0.1, min=0.0, max=0.9)
    window: WindowConfig = _f(factory=WindowConfig)
    folds: FoldsConfig = _f(factory=FoldsConfig)
    lstm: LSTMConfig = _f(factory=LSTMConfig)
    tcn: TCNConfig = _f(factory=TCNConfig)
    search: SearchConfig = _f(factory=SearchConfig)


@dataclass(frozen=True)
class PostprocessConfig:
    max_gap: tuple[int, ...] = (0, 2, 5)
    min_len: tuple[int, ...] = (0, 3, 5)


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
        """A copy with dotted-key overrides applied and validated again."""
        raw = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(raw, key, value, self.source)
        return config_from_dict(raw, self.source)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load and validate a config file with ``--set`` style overrides.

    Parameters
    ----------
    path
        YAML file, or None for the built-in defaults.
    overrides
        ``KEY=VALUE`` strings; KEY is dotted (``extract.batch_size``), VALUE is YAML.

    Returns
    -------
    Config
        The frozen, validated config.
    """
    source = str(path) if path is not None else "<defaults>"
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            what = "is a folder" if p.is_dir() else "does not exist"
            raise ConfigError(f"{p}: config file {what}; pass an existing YAML file to --config")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{p}: malformed YAML{where}: {problem}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read config file: {exc}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {_tname(raw)}")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set extract.batch_size=64")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
        _set_dotted(raw, key.strip(), value, source)
    return config_from_dict(raw, source)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a plain dict (e.g. a run's resolved config) into a :class:`Config`."""
    cfg = _build(Config, raw, "", source, skip={"source"})
    cfg = dataclasses.replace(cfg, source=source)
    _cross_checks(cfg)
    return cfg


def _set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: key '{'.'.join(parts[: i + 1])}' is not a section; cannot set '{key}'")
        node = child
    node[parts[-1]] = value


def _cross_checks(cfg: Config) -> None:
    src = cfg.source
    crop = cfg.data.crop
    if crop.mode == "box" and crop.box is None:
        raise ConfigError(f"{src}: key 'data.crop.box': expected [x, y, width, height] when data.crop.mode is 'box', got null")
    if crop.box is not None and (crop.box[2] <= 0 or crop.box[3] <= 0 or crop.box[0] < 0 or crop.box[1] < 0):
        raise ConfigError(f"{src}: key 'data.crop.box': expected non-negative x, y and positive width, height, got {list(crop.box)}")
    if crop.mode == "pose" and not crop.pose:
        raise ConfigError(f"{src}: key 'data.crop.pose': expected the folder of DeepLabCut files when data.crop.mode is 'pose', got null")
    if not cfg.data.behaviors:
        raise ConfigError(f"{src}: key 'data.behaviors': expected at least one behaviour name, got an empty list")
    if len(set(cfg.data.behaviors)) != len(cfg.data.behaviors):
        raise ConfigError(f"{src}: key 'data.behaviors': names must be unique, got {list(cfg.data.behaviors)}")
    if not cfg.extract.backbones:
        raise ConfigError(f"{src}: key 'extract.backbones': expected at least one backbone name, got an empty list")
    if not cfg.train.models:
        raise ConfigError(f"{src}: key 'train.models': expected at least one of lstm, tcn, got an empty list")
    w = cfg.train.window
    if w.stride > w.length:
        raise ConfigError(f"{src}: key 'train.window.stride': expected at most train.window.length ({w.length}) so every frame is in a window, got {w.stride}")
    if w.inference_stride is not None and w.inference_stride > w.length:
        raise ConfigError(f"{src}: key 'train.window.inference_stride': expected at most train.window.length ({w.length}), got {w.inference_stride}")
    if any(d < 1 for d in cfg.train.tcn.dilations) or not cfg.train.tcn.dilations:
        raise ConfigError(f"{src}: key 'train.tcn.dilations': expected a non-empty list of positive integers, got {list(cfg.train.tcn.dilations)}")
    for name, grid in (("max_gap", cfg.postprocess.max_gap), ("min_len", cfg.postprocess.min_len)):
        if not grid or any(v < 0 for v in grid):
            raise ConfigError(f"{src}: key 'postprocess.{name}': expected a non-empty list of integers >= 0, got {list(grid)}")
    if cfg.train.folds.scheme == "fixed" and (not cfg.train.folds.train or not cfg.train.folds.test):
        raise ConfigError(f"{src}: key 'train.folds': scheme 'fixed' needs both train.folds.train and train.folds.test video lists")
    for key, values in cfg.train.search.space.items():
        _check_search_key(cfg, key, values)


def _check_search_key(cfg: Config, key: str, values: tuple[Any, ...]) -> None:
    src = cfg.source
    if not values:
        raise ConfigError(f"{src}: key 'train.search.space.{key}': expected a non-empty list of candidate values")
    try:
        for value in values:
            raw = cfg.to_dict()
            raw["train"]["search"]["space"] = {}
            _set_dotted(raw, f"train.{key}", value, src)
            config_from_dict(raw, src)
    except ConfigError as exc:
        raise ConfigError(f"{src}: key 'train.search.space.{key}': a candidate value is invalid ({exc})") from None


# --------------------------------------------------------------------------- validation


def _tname(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
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


def _build(cls: type, raw: Any, prefix: str, source: str, skip: set[str] = frozenset()) -> Any:
    where = prefix.rstrip(".") or "top level"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: key '{where}': expected a mapping (section), got {_tname(raw)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(str(k) for k in raw if k not in fields)
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}'; known keys here: {known}")
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _convert(hints[name], raw[name], f"{prefix}{name}", source, f.metadata)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str, source: str, meta: Any = None) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{source}: key '{key}': expected {_describe(tp)}, got {_tname(value)}")

    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".", source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        (inner,) = [a for a in args if a is not type(None)]  # the schema has only X | None
        return _convert(inner, value, key, source, meta)
    if origin is Literal:
        if isinstance(value, bool) or value not in get_args(tp):
            raise bad()
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad()
        return tuple(_convert(a, v, f"{key}[{i}]", source) for i, (a, v) in enumerate(zip(args, value, strict=False)))
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        kt, vt = get_args(tp)
        return {_convert(kt, k, key, source): _convert(vt, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is typing.Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        out: Any = value
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        out = float(value)
    elif tp is str:
        if not isinstance(value, str) or not value:
            raise bad()
        return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported config type {tp}")
    if out != out:  # NaN
        raise bad()
    return _check_range(tp, out, value, key, source, meta)


def _check_range(tp: Any, out: int | float, value: Any, key: str, source: str, meta: Any) -> int | float:
    """``out`` (``value`` converted) when within the field's ``min``/``max`` (inclusive)."""
    lo = meta.get("min") if meta else None
    hi = meta.get("max") if meta else None
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ConfigError(f"{source}: key '{key}': value out of range: expected {_describe(tp)} {rng}, got {value!r}")
    return out


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
