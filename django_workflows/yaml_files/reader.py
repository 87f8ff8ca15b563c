"""YAML read with the line of every key and item, for errors that point at it."""

from typing import Any

import yaml


class _Map(dict):
    """A YAML mapping that remembers where it and each of its keys are."""

    line: int = 0
    key_lines: dict
    duplicates: list


class _Seq(list):
    """A YAML sequence that remembers the line of each item."""

    line: int = 0
    item_lines: list


class LineLoader(yaml.SafeLoader):
    """Safe YAML, keeping line numbers for error messages; dates stay strings (JSON)."""


def _construct_map(loader: LineLoader, node: yaml.MappingNode) -> Any:
    data = _Map()
    data.line, data.key_lines, data.duplicates = node.start_mark.line + 1, {}, []
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        line = key_node.start_mark.line + 1
        if key in data.key_lines:
            data.duplicates.append((key, line))
        data[key] = loader.construct_object(value_node, deep=False)
        data.key_lines[key] = line


def _construct_seq(loader: LineLoader, node: yaml.SequenceNode) -> Any:
    data = _Seq()
    data.line = node.start_mark.line + 1
    data.item_lines = [item.start_mark.line + 1 for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
LineLoader.add_constructor("tag:yaml.org,2002:timestamp", LineLoader.construct_yaml_str)


def key_line(mapping: Any, key: Any, default: int | None) -> int | None:
    return getattr(mapping, "key_lines", {}).get(key, default)


def item_line(seq: Any, index: int, default: int | None) -> int | None:
    lines = getattr(seq, "item_lines", [])
    return lines[index] if index < len(lines) else default


def describe(value: Any) -> str:
    kind = {
        dict: "a mapping",
        _Map: "a mapping",
        list: "a list",
        _Seq: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, dict | list) else ""
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{kind} {shown}".strip()
