"""YAML loading that remembers where every key and item came from.

Validation messages must name the file, the line and the key, so the document
is composed into nodes (which carry their start marks) and converted by hand,
keeping a map from key path (``("clients", 3, "fqdn")``) to line number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[Any, ...]


class YamlError(Exception):
    def __init__(self, file: Path, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


class Positioned:
    """A parsed document plus the line of every path in it."""

    def __init__(self, data: Any, lines: dict[Path_, int], file: Path) -> None:
        self.data, self.lines, self.file = data, lines, file

    def line(self, path: Path_) -> int:
        """Line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)


def load(file: Path, text: str | None = None) -> Positioned:
    if text is None:
        text = file.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(file, line, f"not valid YAML: {exc.problem or exc}") from None
    lines: dict[Path_, int] = {}
    if node is None:
        return Positioned({}, lines, file)
    constructor = yaml.constructor.SafeConstructor()
    return Positioned(_convert(node, (), lines, constructor, file), lines, file)


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], c: yaml.constructor.SafeConstructor,
             file: Path) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(file, key_node.start_mark.line + 1, "mapping keys must be plain words")
            key = c.construct_object(key_node, deep=True)
            if key == "<<":
                raise YamlError(file, key_node.start_mark.line + 1, "YAML merge keys (<<) are not supported")
            if key in out:
                raise YamlError(file, key_node.start_mark.line + 1,
                                f"{_dotted(path + (key,))}: key given twice")
            out[key] = _convert(value_node, path + (key,), lines, c, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, path + (i,), lines, c, file) for i, v in enumerate(node.value)]
    return c.construct_object(node, deep=True)


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


dotted = _dotted
