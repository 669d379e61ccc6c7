"""Collecting a config's problems, and the checks that need more than one value.

:class:`_Problems` gathers every problem of one config so that all are raised at once, as
one :class:`~mouse_pipeline.errors.ConfigError` on one line. :func:`_cross_checks` finds
inconsistent combinations of keys, :func:`_memory_checks` settings whose memory need alone
exceeds :data:`~mouse_pipeline.config_limits.MEMORY_LIMIT_GB`, and :func:`_search_checks`
candidate values of ``train.search.space`` that would not make a valid config, and grids
too large. A check is skipped when one of its keys already had a problem.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from .config_convert import _short
from .config_limits import (
    INFERENCE_WINDOWS,
    LARGEST_INPUT,
    MAX_CANDIDATES,
    MAX_EMBEDDING_DIM,
    MAX_PROBLEMS_SHOWN,
    MAX_TRIALS,
    MEMORY_LIMIT_GB,
    MODEL_KINDS,
)
from .config_yaml import _set_dotted
from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import Config

    #: :func:`mouse_pipeline.config._validate` (the config built from a raw mapping, and its
    #: problems), passed in by it: the search checks validate each candidate value.
    Validate = Callable[[Any, str], "tuple[Config, _Problems]"]


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


def _cross_checks(cfg: Config, problems: _Problems, validate: Validate) -> None:
    """Problems of combinations of keys; a check is skipped when one of its keys is already wrong.

    Ends with :func:`_memory_checks` and :func:`_search_checks` (which uses ``validate``).
    """
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
                             ("train.models", cfg.train.models, "of " + ", ".join((*MODEL_KINDS, "auto")))):
        if ok(key) and not names:
            add(key, f"expected at least one {what}, got an empty list")
    if ok("train.auto.models") and cfg.train.auto.models is not None and not cfg.train.auto.models:
        add("train.auto.models", f"expected at least one of {', '.join(MODEL_KINDS)} (or null: every kind), "
                                 "got an empty list")
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
    tr = cfg.train.transformer
    if ok("train.transformer.width", "train.transformer.heads") and tr.width % tr.heads:
        add("train.transformer.width", f"expected a multiple of train.transformer.heads ({tr.heads}), "
            f"so every head gets width / heads dimensions, got {tr.width}")
    for name in ("max_gap", "min_len"):
        if ok(f"postprocess.{name}") and not getattr(cfg.postprocess, name):
            add(f"postprocess.{name}", "expected a non-empty list of integers >= 0, got []")
    f = cfg.train.folds
    if ok("train.folds") and f.scheme == "fixed" and (not f.train or not f.test):
        add("train.folds", "scheme 'fixed' needs both train.folds.train and train.folds.test video lists")
    _pose_feature_checks(cfg, problems)
    _memory_checks(cfg, problems)
    _search_checks(cfg, problems, validate)


def _pose_feature_checks(cfg: Config, problems: _Problems) -> None:
    """The ``pose`` stream needs a pose folder, and its parts must make an animal's frame."""
    ok, add, pf = problems.clean, problems.add, cfg.extract.pose_features
    key = "extract.pose_features"
    if ok("extract.backbones", f"{key}.pose", "data.crop.pose") and "pose" in cfg.extract.backbones \
            and not (pf.pose or cfg.data.crop.pose):
        add(f"{key}.pose", "expected the folder of pose files when extract.backbones lists pose "
            "(or set data.crop.pose), got null")
    if ok(f"{key}.axis") and pf.axis[0] == pf.axis[1]:
        add(f"{key}.axis", f"expected two different body parts [back, front], got {list(pf.axis)}")
    if ok(f"{key}.bodyparts") and pf.bodyparts is not None:
        if not pf.bodyparts or len(set(pf.bodyparts)) != len(pf.bodyparts):
            add(f"{key}.bodyparts", f"expected null (every body part) or unique names, got "
                f"{list(pf.bodyparts)}")
        elif ok(f"{key}.axis", f"{key}.centre", f"{key}.angles"):
            needed = [*pf.axis, *([pf.centre] if pf.centre else []), *(p for a in pf.angles for p in a)]
            missing = [p for p in dict.fromkeys(needed) if p not in pf.bodyparts]
            if missing:
                add(f"{key}.bodyparts", f"lacks {', '.join(missing)}, which extract.pose_features.axis, "
                    "centre or angles use; add them or change those keys")


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
    tr = t.transformer
    if _uses(cfg, "transformer") and ok("train.window.length", "train.batch_size", "train.transformer"):
        windows = max(t.batch_size, INFERENCE_WINDOWS)
        need = windows * tr.heads * t.window.length ** 2 * 4
        if need > limit:
            problems.add("train.window.length", (
                f"{t.window.length} frames: the transformer's attention weights of one batch "
                f"would take {_gb(need)} ({windows} windows x {tr.heads} heads x length^2 x 4 "
                f"bytes), {over}; use a shorter train.window.length or fewer "
                "train.transformer.heads"))
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
    if _uses(cfg, "lstm"):
        directions, n_in, total = 2 if t.lstm.bidirectional else 1, dim, 0
        for layer in range(t.lstm.layers):
            units = max(1, t.lstm.units // 2**layer)
            total += directions * 4 * units * (n_in + units + 1)
            n_in = directions * units
        out.append(("lstm", "train.lstm.units", float(total), "fewer train.lstm.units or layers"))
    if _uses(cfg, "tcn"):
        k, filters = t.tcn.kernel_size, t.tcn.filters
        blocks = t.tcn.stacks * len(t.tcn.dilations)
        total = k * dim * filters + max(0, 2 * blocks - 1) * k * filters * filters
        out.append(("tcn", "train.tcn.filters", float(total),
                    "fewer train.tcn.filters, a smaller kernel_size or fewer dilations or stacks"))
    if _uses(cfg, "linear"):
        out.append(("linear", "train.linear", float(dim * (1 + t.linear.delta)), "train.linear.delta false"))
    if _uses(cfg, "mlp"):
        out.append(("mlp", "train.mlp.units", float(dim * (1 + t.mlp.delta) * t.mlp.units),
                    "fewer train.mlp.units"))
    if _uses(cfg, "transformer"):
        tr = t.transformer
        total = dim * tr.width + tr.layers * (4 * tr.width * tr.width + 2 * tr.width * tr.ff)
        out.append(("transformer", "train.transformer.width", float(total),
                    "a smaller train.transformer.width or ff, or fewer layers"))
    return out


def _uses(cfg: Config, kind: str) -> bool:
    """Whether the run trains ``kind``: named in ``train.models``, or searched by ``auto``."""
    t = cfg.train
    return kind in t.models or ("auto" in t.models and (t.auto.models is None or kind in t.auto.models))


def _search_checks(cfg: Config, problems: _Problems, validate: Validate) -> None:
    """Each candidate of ``train.search.space`` must make a valid config; the grid must be small."""
    space = cfg.train.search.space
    if not space or not problems.clean("train.search.space"):
        return
    base = cfg.to_dict()
    base["train"]["search"]["space"] = {}
    known = set(validate(base, cfg.source)[1].items)
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
            new = [text for text in validate(raw, cfg.source)[1].items if text not in known]
            if new:
                problems.add(where, f"a candidate value is invalid: {_short(value)} ({'; '.join(new)})")
    if math.prod(sizes) > MAX_TRIALS:
        problems.add("train.search.space", (
            f"{' x '.join(map(str, sizes))} = {math.prod(sizes):,} combinations of candidate values, "
            f"more than the {MAX_TRIALS} trials a search may have; give fewer candidates"))
