"""YAML text to plain data that remembers where every key and value was written."""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.reader import ReaderError

from services.errors import PlaybookError
from services.playbook.diagnostics import Path

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when built in: same marks, ~10x faster
MAX_NODES = 100_000  # aliases may share data; beyond this many expanded nodes it is a YAML bomb
MAX_DEPTH = 100  # keeps every later recursive walk far from Python's recursion limit, whoever the caller is


class Location(NamedTuple):
    line: int
    column: int


class YamlSyntaxError(PlaybookError):
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
        loader = _Loader(text)
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
    except RecursionError as err:  # the pure-Python parser recurses while composing, before MAX_DEPTH applies
        raise YamlSyntaxError(f"the YAML is nested more than {MAX_DEPTH} levels deep", None) from err


class _Builder:
    """Turns composed nodes into data, like SafeLoader, but keeps each node's mark by path."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.values: dict[Path, Location] = {}
        self.keys: dict[Path, Location] = {}
        self.duplicates: list[DuplicateKey] = []
        self._built: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size), for aliases
        self._open: set[int] = set()
        self._expanded = 0

    def build(self, node: Node, path: Path) -> Any:
        self.values[path] = _location(node.start_mark)
        if len(path) > MAX_DEPTH:
            raise YamlSyntaxError(f"the YAML is nested more than {MAX_DEPTH} levels deep", self.values[path])
        if isinstance(node, ScalarNode):
            self._count(1)
            return self._scalar(node)
        if id(node) in self._built:
            value, size = self._built[id(node)]
            self._count(size)
            return value
        if id(node) in self._open:
            raise ConstructorError(None, None, "an alias refers to the collection that contains it", node.start_mark)
        expected = _MAP if isinstance(node, MappingNode) else _SEQ
        if node.tag != expected:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise ConstructorError(None, None, f"the tag {tag!r} is not allowed; write plain mappings and lists",
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
            key = self._scalar(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key_node, ScalarNode) or not isinstance(key, Hashable):
                raise ConstructorError(None, None, "a mapping key must be a plain value, not a list or mapping",
                                       key_node.start_mark)
            child = path + (key,)
            where = _location(key_node.start_mark)
            if id(pair) in explicit:
                if key in written:
                    self.duplicates.append(DuplicateKey(child, written[key], where))
                written[key] = where
            self.keys[child] = where
            result[key] = self.build(value_node, child)
        return result

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except Exception as err:  # PyYAML's constructors fail raw when an explicit tag does not fit, e.g. `!!int x`
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise ConstructorError(None, None, f"{node.value!r} is not a valid {tag}", node.start_mark) from err

    def _count(self, nodes: int) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise YamlSyntaxError(f"the YAML expands to more than {MAX_NODES} values through aliases", None)


def _location(mark: yaml.Mark | None) -> Location | None:
    return Location(mark.line + 1, mark.column + 1) if mark is not None else None


def _describe(err: yaml.MarkedYAMLError) -> str:
    problem = (err.problem or "").removeprefix("but ")
    if err.context and err.context_mark is not None:
        return f"{err.context} (line {err.context_mark.line + 1}): {problem}"
    return problem or err.context or "not valid YAML"
