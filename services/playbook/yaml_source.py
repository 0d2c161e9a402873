"""YAML text to plain data that remembers where every key and value was written."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from services.playbook.diagnostics import Path

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
MAX_NODES = 100_000  # aliases may share data; beyond this many expanded nodes it is a YAML bomb


class Location(NamedTuple):
    line: int
    column: int


class YamlSyntaxError(Exception):
    """The text is not YAML we accept; `location` is 1-based when the parser knows it."""

    def __init__(self, message: str, location: Location | None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location


class DuplicateKey(NamedTuple):
    path: Path
    first: Location
    again: Location


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    duplicates: list[DuplicateKey] = field(default_factory=list)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """Where `path` is written; for a path not in the file (a default), its nearest written parent."""
        if key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path, Location(1, 1))


def load_yaml(text: str) -> YamlDocument:
    """Parse one YAML document with the safe loader, recording locations and duplicate keys."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            builder = _Builder(loader)
            data = None if node is None else builder.build(node, ())
            return YamlDocument(data, builder.values, builder.keys, builder.duplicates)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        raise YamlSyntaxError(_describe(err), _location(err.problem_mark or err.context_mark)) from err
    except ReaderError as err:
        line = text.count("\n", 0, err.position)
        column = err.position - (text.rfind("\n", 0, err.position) + 1)
        raise YamlSyntaxError(f"the character {chr(err.character)!r} is not allowed in YAML",
                              Location(line + 1, column + 1)) from err
    except RecursionError as err:
        raise YamlSyntaxError("the YAML is nested too deeply", None) from err


class _Builder:
    """Turns composed nodes into data, like SafeLoader, but keeps each node's mark by path."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.values: dict[Path, Location] = {}
        self.keys: dict[Path, Location] = {}
        self.duplicates: list[DuplicateKey] = []
        self._built: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size), for aliases
        self._open: set[int] = set()
        self._expanded = 0

    def build(self, node: Node, path: Path) -> Any:
        self.values[path] = _location(node.start_mark)
        if isinstance(node, ScalarNode):
            self._count(1)
            return self.loader.construct_object(node, deep=True)
        if id(node) in self._built:
            value, size = self._built[id(node)]
            self._count(size)
            return value
        if id(node) in self._open:
            raise ConstructorError(None, None, "an alias refers to the collection that contains it", node.start_mark)
        expected = _MAP if isinstance(node, MappingNode) else _SEQ
        if node.tag != expected:
            raise ConstructorError(None, None, f"the tag {node.tag!r} is not allowed; write plain mappings and lists",
                                   node.start_mark)
        self._open.add(id(node))
        before = self._expanded
        self._count(1)
        if isinstance(node, MappingNode):
            value: Any = self._mapping(node, path)
        else:
            value = [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        self._open.discard(id(node))
        self._built[id(node)] = (value, self._expanded - before)
        return value

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        explicit = {id(pair) for pair in node.value if pair[0].tag != _MERGE}
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys; explicit pairs come last and win
        result: dict[Any, Any] = {}
        written: dict[Any, Location] = {}
        for pair in node.value:
            key_node, value_node = pair
            if not isinstance(key_node, ScalarNode):
                raise ConstructorError(None, None, "a mapping key must be a plain value, not a list or mapping",
                                       key_node.start_mark)
            key = self.loader.construct_object(key_node)
            child = path + (key,)
            where = _location(key_node.start_mark)
            if id(pair) in explicit:
                if key in written:
                    self.duplicates.append(DuplicateKey(child, written[key], where))
                written[key] = where
            self.keys[child] = where
            result[key] = self.build(value_node, child)
        return result

    def _count(self, nodes: int) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise YamlSyntaxError(f"the YAML expands to more than {MAX_NODES} values through aliases", None)


def _location(mark: yaml.Mark | None) -> Location | None:
    return Location(mark.line + 1, mark.column + 1) if mark is not None else None


def _describe(err: yaml.MarkedYAMLError) -> str:
    problem = err.problem or err.context or "not valid YAML"
    if err.context and err.problem and err.context_mark is not None:
        return f"{problem} ({err.context} at line {err.context_mark.line + 1})"
    return problem
