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

Modules
-------
This module holds the schema and the public API (``load_config``, ``config_from_dict``,
``dump_config`` and the limits, re-exported); the work is done by
:mod:`~mouse_pipeline.config_yaml` (the strict YAML reader and ``--set`` parsing),
:mod:`~mouse_pipeline.config_convert` (raw values checked and built into the dataclasses),
:mod:`~mouse_pipeline.config_checks` (the problem collector and the checks across keys,
of memory and of the search space) and :mod:`~mouse_pipeline.config_limits` (the bounds).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .config_checks import _cross_checks, _Problems
from .config_convert import _build, _renamed, _to_plain
from .config_limits import (
    INFERENCE_WINDOWS,
    LARGEST_INPUT,
    MAX_CANDIDATES,
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_EMBEDDING_DIM,
    MAX_FRAMES,
    MAX_PIXELS,
    MAX_PROBLEMS_SHOWN,
    MAX_SEED,
    MAX_TRANSFORMER_LAYERS,
    MAX_TRIALS,
    MEMORY_LIMIT_GB,
    MODEL_KINDS,
)
from .config_yaml import _parse_override, _read_config_file, _set_dotted
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

__all__ = ["INFERENCE_WINDOWS", "LARGEST_INPUT", "MAX_CANDIDATES", "MAX_CONFIG_BYTES", "MAX_DEPTH",
           "MAX_EMBEDDING_DIM", "MAX_FRAMES", "MAX_PIXELS", "MAX_PROBLEMS_SHOWN", "MAX_SEED",
           "MAX_TRIALS", "MEMORY_LIMIT_GB", "MODEL_KINDS", "AshaConfig", "AutoConfig", "BlocksConfig", "Config",
           "CropConfig", "DataConfig", "ExtractConfig", "FoldsConfig", "InnerFoldsConfig", "LSTMConfig",
           "LinearConfig", "MLPConfig", "MotionConfig", "PoseFeaturesConfig", "PostprocessConfig", "SearchConfig",
           "TCNConfig", "TrainConfig", "TransformerConfig", "WindowConfig", "config_from_dict",
           "dump_config", "load_config"]

# --------------------------------------------------------------------------- schema

#: The sequence-model kinds a config may name (``sequences.models.MODEL_KINDS`` builds them);
#: ``train.models`` also accepts ``auto`` (the kind chosen per fold on validation).
ModelKind = Literal[MODEL_KINDS]


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
    individual: str | None = None
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
class MotionConfig:
    """How motion streams (``<backbone>+motion`` in ``extract.backbones``) make their images."""

    method: Literal["dis", "farneback", "diff"] = "dis"
    dis_preset: Literal["ultrafast", "fast", "medium"] = "fast"
    flow_scale: float = _f(8.0, min=0.01, max=255.0)
    diff_gain: float = _f(4.0, min=0.01, max=255.0)


@dataclass(frozen=True)
class PoseFeaturesConfig:
    pose: str | None = None
    bodyparts: tuple[str, ...] | None = None
    axis: tuple[str, str] = ("tailbase", "snout")
    centre: str | None = "midbody"
    angles: tuple[tuple[str, str, str], ...] = (("tailbase", "midbody", "snout"),)
    min_likelihood: float | None = _f(None, min=0.0, max=1.0)


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
    motion: MotionConfig = _f(factory=MotionConfig)
    pose_features: PoseFeaturesConfig = _f(factory=PoseFeaturesConfig)


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
class FusionConfig:
    projection: int | None = _f(None, min=1, max=65536)


@dataclass(frozen=True)
class LinearConfig:
    delta: bool = False
    l2: float = _f(1e-4, min=0.0, max=10.0)
    solver: Literal["lbfgs", "adam"] = "lbfgs"


@dataclass(frozen=True)
class MLPConfig:
    units: int = _f(64, min=1, max=4096)
    dropout: float = _f(0.2, min=0.0, max=0.9)
    delta: bool = False


@dataclass(frozen=True)
class TransformerConfig:
    layers: int = _f(2, min=1, max=MAX_TRANSFORMER_LAYERS)
    heads: int = _f(4, min=1, max=64)
    width: int = _f(64, min=1, max=4096)
    ff: int = _f(128, min=1, max=16_384)
    dropout: float = _f(0.1, min=0.0, max=0.9)
    positions: Literal["sinusoidal", "relative"] = "relative"
    max_distance: int = _f(32, min=1, max=MAX_FRAMES)


@dataclass(frozen=True)
class InnerFoldsConfig:
    k: int = _f(3, min=2, max=100_000)


@dataclass(frozen=True)
class BlocksConfig:
    k: int = _f(5, min=2, max=100_000)
    refit: bool = True


@dataclass(frozen=True)
class AutoConfig:
    models: tuple[ModelKind, ...] | None = None
    select: Literal["validation", "inner_videos"] = "validation"
    prefer: Literal["best", "simplest"] = "best"


@dataclass(frozen=True)
class AshaConfig:
    min_epochs: int = _f(2, min=1, max=100_000)
    reduction_factor: int = _f(3, min=2, max=100)


@dataclass(frozen=True)
class SearchConfig:
    algorithm: Literal["grid", "random", "tpe"] = "grid"
    n_trials: int = _f(4, min=1, max=MAX_TRIALS)
    startup_trials: int = _f(4, min=1, max=MAX_TRIALS)
    early_stop: Literal["none", "asha"] = "none"
    asha: AshaConfig = _f(factory=AshaConfig)
    space: dict[str, tuple[Any, ...]] = _f(factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    run: str = "runs/default"
    models: tuple[Literal[ModelKind, "auto"], ...] = ("lstm", "tcn")
    inputs: tuple[tuple[str, ...], ...] | None = None
    fusion: FusionConfig = _f(factory=FusionConfig)
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
    linear: LinearConfig = _f(factory=LinearConfig)
    mlp: MLPConfig = _f(factory=MLPConfig)
    transformer: TransformerConfig = _f(factory=TransformerConfig)
    search: SearchConfig = _f(factory=SearchConfig)
    validation: Literal["videos", "inner_folds", "blocks"] = "blocks"
    inner_folds: InnerFoldsConfig = _f(factory=InnerFoldsConfig)
    blocks: BlocksConfig = _f(factory=BlocksConfig)
    auto: AutoConfig = _f(factory=AutoConfig)


@dataclass(frozen=True)
class PostprocessConfig:
    max_gap: tuple[int, ...] = _f((0, 2, 5), min=0, max=MAX_FRAMES)
    min_len: tuple[int, ...] = _f((0, 3, 5), min=0, max=MAX_FRAMES)


@dataclass(frozen=True)
class RayConfig:
    """Where and how ``extract``/``train``/``predict`` run on Ray (mouse_pipeline.cluster)."""

    enabled: bool = False
    address: str = "local"
    cpus: int = _f(0, min=0, max=100_000)
    cpus_per_worker: int = _f(1, min=1, max=1024)
    gpus_per_worker: float = _f(1.0, min=0.0, max=64.0)
    intra_op_threads: int = _f(0, min=0, max=1024)
    object_store_mb: int = _f(0, min=0, max=10_000_000)
    max_retries: int = _f(3, min=0, max=100)


@dataclass(frozen=True)
class ClusterConfig:
    ray: RayConfig = _f(factory=RayConfig)


@dataclass(frozen=True)
class Config:
    data: DataConfig = _f(factory=DataConfig)
    extract: ExtractConfig = _f(factory=ExtractConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    postprocess: PostprocessConfig = _f(factory=PostprocessConfig)
    cluster: ClusterConfig = _f(factory=ClusterConfig)
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
    cfg = _build(Config, _renamed(raw, problems), "", problems, skip=frozenset({"source"}))
    cfg = dataclasses.replace(cfg, source=source)
    for key in PATH_KEYS:
        value = _get_dotted(cfg, key)
        if is_path_value(key, value):
            cfg = _replace_dotted(cfg, key.split("."), resolve_path(value, _cwd()))
    _cross_checks(cfg, problems, _validate)
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


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (``runs/<name>/config.yaml``)."""
    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))  # a killed run leaves no half config
