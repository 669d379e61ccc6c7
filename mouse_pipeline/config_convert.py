"""From raw YAML values to the frozen config dataclasses, and back.

:func:`_build` makes a section's dataclass from its raw mapping; :func:`_convert` checks one
value against its field's type and numeric bounds (``min``/``max`` in the field's metadata,
inclusive; on a list field they apply to each element). A wrong value is recorded in the
:class:`~mouse_pipeline.config_checks._Problems` passed in, worded by :func:`_describe`
(what was expected), :func:`_range_text` (its bounds) and :func:`_tname` (what came), and
the field keeps its default, so that every problem of a file is found in one pass.
:func:`_to_plain` turns a config back into plain, YAML-able values; :func:`_renamed` reads
the old names of renamed keys (:data:`RENAMED`) as their new ones.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import re
import types
import typing
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from .config_checks import _Problems

log = logging.getLogger(__name__)

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


#: Keys that were renamed: old dotted key -> new one (the old name keeps working).
RENAMED = {"train.search.method": "train.search.algorithm"}


def _renamed(raw: Any, problems: _Problems) -> Any:
    """``raw`` with the old names of :data:`RENAMED` keys moved to their new names (a copy;
    ``raw`` is not changed), each with a warning naming the new key; both names given is a
    problem. A run folder's config written before a rename reads as it did."""
    out = raw
    for old, new in RENAMED.items():
        *section, old_key = old.split(".")
        node = raw
        for part in section:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_key not in node:
            continue
        new_key = new.rsplit(".", 1)[1]
        out = copy.deepcopy(out)
        target = out
        for part in section:
            target = target[part]
        value = target.pop(old_key)
        if new_key in target:
            problems.add(old, f"'{old}' is the old name of '{new}', and both are given; keep '{new}' only")
        else:
            target[new_key] = value
            log.warning("%s: '%s' is the old name of '%s' (read as it); use the new name", problems.source, old, new)
    return out
