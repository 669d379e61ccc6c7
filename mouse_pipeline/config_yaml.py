"""Strict reading of a config's YAML: the file, and ``--set KEY=VALUE`` overrides.

:class:`_StrictLoader`, a ``yaml.SafeLoader`` subclass, also refuses what ``safe_load`` lets
through silently or slowly: a key given twice in one mapping at any depth, aliases,
nesting deeper than :data:`~mouse_pipeline.config_limits.MAX_DEPTH` levels; a file over
:data:`~mouse_pipeline.config_limits.MAX_CONFIG_BYTES` is not read at all (see
:mod:`mouse_pipeline.config` for why). Each refusal, and malformed YAML, is a one-line
:class:`~mouse_pipeline.errors.ConfigError` naming the file and the line.
:func:`_read_config_file` gives the raw mapping of a file, :func:`_parse_override` the
dotted key and YAML value of one ``--set`` string, and :func:`_set_dotted` puts a value
at a dotted key of a raw mapping. Nothing here knows the schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .config_convert import _tname
from .config_limits import MAX_CONFIG_BYTES, MAX_DEPTH
from .errors import ConfigError


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


def _set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: key '{'.'.join(parts[: i + 1])}' is not a section; cannot set '{key}'")
        node = child
    node[parts[-1]] = value
