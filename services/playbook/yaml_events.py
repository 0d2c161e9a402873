"""Plain data from a YAML parser's events, built the way PyYAML's SafeLoader builds it.

No composed node tree: values go into their collections as the events pass, so a big
playbook costs its data and little more. Anchors, aliases and merge keys (through the
loader's own `flatten_mapping`), duplicate keys, tags, depth and size limits are kept
with PyYAML's errors and marks; a `Recorder` notes where chosen paths are written.
"""
from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import (AliasEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent,
                         SequenceStartEvent, StreamEndEvent)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from services.errors import PlaybookError
from services.playbook.diagnostics import Path, format_path, short
from services.playbook.limits import MAX_STEPS

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_NOT_JSON = frozenset({_TIMESTAMP, "tag:yaml.org,2002:binary"})  # values a run's events (JSON) cannot keep as they are


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml's parser when built in
    """The safe loader's rules, but a date is the text written (as in YAML 1.2): JSON, where a run keeps its values,
    has no dates, and `${released}` gave a step a date where it wanted text."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
    for first, resolvers in Loader.yaml_implicit_resolvers.items()}
_RESOLVED = frozenset(first for first, resolvers in Loader.yaml_implicit_resolvers.items()
                      if resolvers)  # first characters that may make a plain scalar not a string
MAX_DEPTH = 100  # keeps every later recursive walk far from Python's recursion limit, whoever the caller is
MAX_VALUES = 4_000_000  # values in one document, aliases expanded; far beyond the largest playbook the engine takes
ALIASED_VALUES = 100_000  # values aliases may repeat beyond as many as the text writes; more is a YAML bomb
MAX_ITEMS = MAX_STEPS  # items in one list: no list of a playbook may be longer than its steps
LOWEST_INTEGER, HIGHEST_INTEGER = -2**63, 2**64 - 1  # 64 bits: beyond, `float()` of it raises and nothing counts so far


class Location(NamedTuple):
    line: int
    column: int


class YamlSyntaxError(PlaybookError):
    """The text is not YAML we accept; `location` is 1-based when the parser knows it, `step` is the
    id (or, before its id was read, the place) of the step being read when reading stopped."""

    def __init__(self, message: str, location: Location | None, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.step = step


class YamlTooLarge(YamlSyntaxError):
    """Valid YAML, but more of it than the engine reads: raised where reading stopped, not at the end.

    `path` names the list that held too many items, when that was the reason.
    """

    def __init__(self, message: str, location: Location | None, path: Path | None = None) -> None:
        super().__init__(message, location)
        self.path = path


class DuplicateKey(NamedTuple):
    path: Path
    first: Location
    again: Location




class Recorder:
    """Collects the locations of some paths while the text is read again."""

    def __init__(self, paths: set[Path], keys: set[Path]) -> None:
        self.paths, self.wanted_keys = paths, keys
        self.values: dict[Path, Location] = {}
        self.keys: dict[Path, Location] = {}

    def value(self, path: Path, mark: Any) -> None:
        if path in self.paths:
            self.values[path] = location_of(mark)

    def key(self, path: Path, mark: Any) -> None:
        if path in self.wanted_keys:
            self.keys[path] = location_of(mark)



class _Built(NamedTuple):
    """A complete value, with what an alias or a merge key needs to know of it."""

    value: Any
    mark: Any
    size: int  # values it expands to
    height: int  # levels of collections in it
    node: Node | None  # a stand-in node for PyYAML's flatten_mapping, when a merge key may read it


_OPEN = _Built(None, None, 0, 0, None)  # an anchor whose collection is still being read
_NO_KEY = object()
_CONSTRUCTED = "constructed"  # a cached plain scalar that is already its value


class _Frame:
    """A collection being read: its value so far and what its next event means.

    What most collections never change is a class default, not set on each of the thousands a big playbook opens.
    """

    anchor: str | None = None
    start = 0  # values read before it opened
    saved: int | None = None  # when its height is measured: the deepest level seen before it opened
    key_node: Node | None = None
    merging = False  # the value being read belongs to a merge key `<<`
    source = False  # given to a merge key: its entries land in the mapping that merges it
    keep = False  # a merge key may read it: its entries are kept as nodes
    value_marks: dict[Any, Any] | None = None  # key -> mark of its value, only while locating
    merges: list[tuple[Node, Node]] | None = None  # its `<<` entries, for flatten_mapping
    nodes: list[Any] | None = None  # its entries or items as nodes, when kept

    def __init__(self, is_map: bool, mark: Any) -> None:
        self.value: Any = {} if is_map else []
        self.is_map, self.mark = is_map, mark
        self.key: Any = _NO_KEY
        self.plain = True  # nothing merges it and it merges nothing now: scalars may go straight in
        self.written: dict[Any, Any] = {}  # key -> mark of its last explicit entry, for duplicates

    @classmethod
    def kept(cls, is_map: bool, mark: Any, anchor: str | None, start: int, *, keep: bool = False,
             source: bool = False) -> _Frame:
        """A collection an alias or a merge key may read: its height, size and nodes are kept."""
        frame = cls(is_map, mark)
        frame.anchor, frame.start, frame.source = anchor, start, source
        frame.keep = keep or source or anchor is not None
        frame.plain = not frame.keep
        frame.nodes = [] if frame.keep else None
        return frame


class Builder:
    """Builds data from parser events as SafeLoader would, with PyYAML's errors and marks.

    Merge keys are resolved by the loader's own flatten_mapping, on stand-in nodes, so they
    follow the installed PyYAML. A construction error is held until the text is read to its
    end: a parse error anywhere wins over it, as it did when the node tree was composed first.
    """

    def __init__(self, loader: Any, recorder: Recorder | None) -> None:
        self.loader = loader
        self.recorder = recorder
        self.data: Any = None
        self.duplicates: list[DuplicateKey] = []
        self.odd_keys: list[Path] = []  # keys that are no text (numbers, true, null): a run's JSON has none
        self.anchors: dict[str, _Built] = {}
        self.anchor_marks: dict[str, Any] = {}
        self.written = 0  # values the text writes
        self.aliased = 0  # values repeated by aliases
        self.deepest = 0  # the most collections open at once so far: heights of anchored values come from it
        self.held: Exception | None = None
        self.done, self.root = False, None  # the document's value, once complete
        self.stack: list[_Frame] = []  # the collections open now: where reading stopped, if it stops

    def run(self) -> None:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(StreamEndEvent):
            return
        loader.get_event()  # DocumentStart
        root_mark = loader.peek_event().start_mark
        self.data = self._document()
        loader.get_event()  # DocumentEnd
        if not loader.check_event(StreamEndEvent):
            raise ComposerError("expected a single document in the stream", root_mark,
                                "but found another document", loader.get_event().start_mark)
        if self.held is not None:
            raise self.held

    def _document(self) -> Any:
        """The root value: events are read until it is complete, without recursion."""
        get = self.loader.get_event
        stack: list[_Frame] = self.stack
        locating = self.recorder is not None
        plain: dict[str, tuple[str, Any]] = {}  # short plain scalars seen before: their tag and value
        names: dict[str, str] = {}  # keys seen before: thousands of mappings share one string per key
        while True:
            event = get()
            kind = type(event)
            if kind is ScalarEvent and event.anchor is None and stack and stack[-1].plain and not locating:
                frame = stack[-1]  # the common case, kept short: a plain scalar in a plain collection
                value = event.value
                if event.tag is None and (not event.implicit[0] or value[:1] not in _RESOLVED):
                    tag = _STR
                elif event.tag is None and value in plain:
                    tag, value = plain[value]
                else:
                    tag = self._tag(event)
                    if tag != _STR and tag not in (_MERGE, _VALUE) and event.tag is None and len(value) <= 16:
                        constructed = self._construct(event, tag)
                        if self.held is None:
                            plain[value] = (_CONSTRUCTED, constructed)
                            tag, value = _CONSTRUCTED, constructed
                    elif tag == _STR and len(value) <= 16:
                        plain[value] = (_STR, value)
                if frame.is_map and frame.key is _NO_KEY:
                    if tag is _CONSTRUCTED:
                        self._key(frame, event, stack)
                    elif tag == _STR:
                        frame.key = value = names.setdefault(value, value)
                        if value in frame.written:
                            self._duplicate(frame, event.start_mark, stack)
                        frame.written[value] = event.start_mark
                    else:
                        self._key(frame, event, stack)
                else:
                    if tag != _STR and tag is not _CONSTRUCTED:
                        value = self._construct(event, tag)
                    if frame.is_map:
                        frame.value[frame.key] = value
                        frame.key = _NO_KEY
                    else:
                        if len(frame.value) >= MAX_ITEMS:
                            self._too_many(stack, event.start_mark)
                        frame.value.append(value)
                    self.written += 1
                    if self.written + self.aliased > MAX_VALUES:
                        self._count(0, aliased=False)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                if frame.plain and frame.merges is None and stack and stack[-1].plain and not locating:
                    parent = stack[-1]  # a plain collection ends inside a plain one
                    if parent.is_map:
                        parent.value[parent.key] = frame.value
                        parent.key = _NO_KEY
                    else:
                        if len(parent.value) >= MAX_ITEMS:
                            self._too_many(stack, frame.mark)
                        parent.value.append(frame.value)
                else:
                    self._deliver(stack, self._close(frame, stack))
            elif (event.anchor is None and event.tag is None and stack and stack[-1].plain and not locating
                  and (kind is MappingStartEvent or kind is SequenceStartEvent) and len(stack) < MAX_DEPTH
                  and not (stack[-1].is_map and stack[-1].key is _NO_KEY)):
                stack.append(_Frame(kind is MappingStartEvent, event.start_mark))  # in a plain one, it starts
                if len(stack) > self.deepest:
                    self.deepest = len(stack)
                self.written += 1
                if self.written + self.aliased > MAX_VALUES:
                    self._count(0, aliased=False)
            else:
                self._register(event)
                if stack and stack[-1].is_map and stack[-1].key is _NO_KEY:
                    self._key(stack[-1], event, stack)
                elif kind is ScalarEvent:
                    tag = self._tag(event)
                    value = event.value if tag == _STR else self._construct(event, tag)
                    built = _Built(value, event.start_mark, 1, 0, _scalar_node(tag, event, value))
                    if event.anchor is not None:
                        self.anchors[event.anchor] = built
                    self._count(1, aliased=False)
                    self._deliver(stack, built)
                elif kind is AliasEvent:
                    self._deliver(stack, self._alias(event, stack))
                else:
                    self._open(event, stack)
            if self.held is not None:
                self._drain(len(stack))
                return None
            if not stack and self.done:
                return self.root

    def step_being_read(self) -> str | None:
        """The step whose mapping is open, or (between steps) the one just read: its id if read already,
        else its place (`steps[2]`)."""
        stack = self.stack
        if len(stack) < 2 or not stack[0].is_map or stack[0].key != "steps" or stack[1].is_map:
            return None
        steps = stack[1].value
        if len(stack) > 2 and stack[2].is_map:
            step, index = stack[2].value, len(steps)
        elif steps and isinstance(steps[-1], dict):
            step, index = steps[-1], len(steps) - 1    # a line that ended the step it belongs to
        else:
            return None
        step_id = step.get("id")
        return step_id if isinstance(step_id, str) else f"steps[{index}]"

    def _drain(self, depth: int) -> None:
        """Read the rest of the document for parse errors only: one is already held."""
        get = self.loader.get_event
        while depth:
            event = get()
            kind = type(event)
            self._register(event)
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1

    def _register(self, event: Any) -> None:
        """Anchors as the composer keeps them: an unknown alias or a second anchor of one name is an error."""
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            return
        if type(event) is AliasEvent:
            if anchor not in self.anchor_marks:
                raise ComposerError(None, None, "found undefined alias", event.start_mark)
            return
        if anchor in self.anchor_marks:
            raise ComposerError("found duplicate anchor; first occurrence", self.anchor_marks[anchor],
                                "second occurrence", event.start_mark)
        self.anchor_marks[anchor] = event.start_mark
        self.anchors[anchor] = _OPEN

    def _hold(self, err: Exception) -> None:
        if self.held is None:
            self.held = err

    def _path(self, stack: list[_Frame]) -> Path:
        """Where the value being read lands: entries given to a merge key land in the mapping that merges."""
        return tuple(frame.key if frame.is_map else len(frame.value) for frame in stack
                     if not frame.merging and not (frame.source and not frame.is_map))

    def _open(self, event: Any, stack: list[_Frame]) -> None:
        """A mapping or sequence starts: PyYAML's checks in PyYAML's order, then a frame for it."""
        is_map = type(event) is MappingStartEvent
        parent = stack[-1] if stack else None
        if parent is not None and (parent.merging or parent.source and not parent.is_map):
            self._push(stack, _Frame.kept(is_map, event.start_mark, event.anchor, self._size(), source=True), True)
            return
        if self.recorder is not None:
            self.recorder.value(self._path(stack), event.start_mark)
        if len(stack) > MAX_DEPTH and len(self._path(stack)) > MAX_DEPTH:  # a path is never longer than the stack
            self._hold(YamlSyntaxError(f"the YAML is nested more than {MAX_DEPTH} levels deep",
                                       location_of(event.start_mark)))
        tag = event.tag
        if tag is not None and tag != "!" and tag != (_MAP if is_map else _SEQ):
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            self._hold(ConstructorError(None, None, f"the tag {shown!r} is not allowed; write plain mappings and lists",
                                        event.start_mark))
        keep = parent is not None and parent.keep and not parent.is_map  # an item of a list a merge key may read
        frame = _Frame.kept(is_map, event.start_mark, event.anchor, self._size(), keep=keep)
        self._push(stack, frame, frame.keep or (parent is not None and parent.keep))
        self._count(1, aliased=False)

    def _push(self, stack: list[_Frame], frame: _Frame, measured: bool) -> None:
        """A collection opens; the height of one a merge key or an alias may copy is measured."""
        stack.append(frame)
        if measured:
            frame.saved, self.deepest = self.deepest, len(stack)
        elif len(stack) > self.deepest:
            self.deepest = len(stack)

    def _key(self, frame: _Frame, event: Any, stack: list[_Frame]) -> None:
        """The event a mapping reads when it waits for a key."""
        kind = type(event)
        if kind is ScalarEvent:
            tag = self._tag(event)
            key = event.value if tag in (_STR, _VALUE, _MERGE) else self._construct(event, tag)
            node: Node = _scalar_node(tag, event, key)
            if event.anchor is not None:
                self.anchors[event.anchor] = _Built(key, event.start_mark, 1, 0, node)
        elif kind is AliasEvent:
            anchor = self.anchors[event.anchor]
            node = anchor.node if anchor is not _OPEN else ScalarNode(_SEQ, "", self.anchor_marks[event.anchor],
                                                                      None)
            key = anchor.value if isinstance(node, ScalarNode) and anchor is not _OPEN else []
        else:
            key, node = [], ScalarNode(_SEQ, "", event.start_mark, None)
            stack.append(_Frame(False, event.start_mark))  # only skipped: the error below is held
        if isinstance(key, (list, dict)) or not isinstance(key, Hashable):
            self._hold(ConstructorError(None, None, "a mapping key must be a plain value, not a list or mapping",
                                        node.start_mark))
            return
        frame.key, frame.key_node, frame.merging = key, node, node.tag == _MERGE
        if frame.merging:
            frame.plain = False
        elif not isinstance(key, str):
            self.odd_keys.append(self._path(stack))
        if not frame.merging and not frame.source:
            if key in frame.written:
                self._duplicate(frame, node.start_mark, stack)
            frame.written[key] = node.start_mark
            if self.recorder is not None:
                self.recorder.key(self._path(stack), node.start_mark)

    def _duplicate(self, frame: _Frame, mark: Any, stack: list[_Frame]) -> None:
        first = location_of(frame.written[frame.key])
        self.duplicates.append(DuplicateKey(self._path(stack), first, location_of(mark)))

    def _tag(self, event: Any) -> str:
        """The resolver's tag, asked only when the first character may make the scalar more than a string."""
        tag = event.tag
        if tag is None or tag == "!":
            value = event.value
            if event.implicit[0] and value[:1] in _RESOLVED:
                return self.loader.resolve(ScalarNode, value, event.implicit)
            return _STR
        return tag

    def _construct(self, event: Any, tag: str) -> Any:
        if tag in _NOT_JSON:
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            self._hold(ConstructorError(None, None, f"the tag {shown!r} is not allowed; write the value as text",
                                        event.start_mark))
            return None
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            value = self.loader.construct_object(node, deep=True)
            if type(value) is int and not LOWEST_INTEGER <= value <= HIGHEST_INTEGER:
                self._hold(ConstructorError(None, None, f"{short(event.value)} is an integer beyond 64 bits, more than "
                                            "any playbook value holds; quote it if it is text", event.start_mark))
            return value
        except yaml.YAMLError as err:
            self._hold(err)
        except Exception:  # noqa: BLE001 - PyYAML's constructors fail raw when an explicit tag does not fit (`!!int x`)
            shown = tag.replace("tag:yaml.org,2002:", "!!")
            self._hold(ConstructorError(None, None, f"{event.value!r} is not a valid {shown}", event.start_mark))
        finally:
            self.loader.constructed_objects.pop(node, None)
        return None

    def _alias(self, event: Any, stack: list[_Frame]) -> _Built:
        anchor = self.anchors[event.anchor]
        if anchor is _OPEN:
            self._hold(ConstructorError(None, None, "an alias refers to the collection that contains it",
                                        self.anchor_marks[event.anchor]))
            return anchor
        depth = len(self._path(stack)) if len(stack) + anchor.height > MAX_DEPTH else 0
        if depth > MAX_DEPTH or depth + anchor.height > MAX_DEPTH:
            where = anchor.mark if depth > MAX_DEPTH else event.start_mark
            self._hold(YamlSyntaxError(f"the YAML is nested more than {MAX_DEPTH} levels deep", location_of(where)))
        self._count(anchor.size, aliased=True)
        self.deepest = max(self.deepest, len(stack) + anchor.height)
        return anchor

    def _size(self) -> int:
        return self.written + self.aliased

    def _count(self, values: int, *, aliased: bool) -> None:
        """Values as they are read; aliases may repeat no more than the text writes, plus an allowance."""
        if aliased:
            self.aliased += values
            if self.aliased > self.written + ALIASED_VALUES:
                self._hold(YamlSyntaxError(f"the YAML expands to more than {self.written + ALIASED_VALUES} values "
                                           "through aliases", None))
        else:
            self.written += values
        if self.written + self.aliased > MAX_VALUES:
            raise YamlTooLarge(f"the YAML holds more than {MAX_VALUES} values", None)

    def _too_many(self, stack: list[_Frame], mark: Any) -> None:
        path = self._path(stack)[:-1]
        raise YamlTooLarge(f"the list at {format_path(path) or 'the top'} holds more than {MAX_ITEMS} items",
                           location_of(mark), path)

    def _deliver(self, stack: list[_Frame], built: _Built) -> None:
        """A complete value goes into the collection that holds it (or is the document)."""
        if self.held is not None:
            return
        if not stack:
            if self.recorder is not None:
                self.recorder.value((), built.mark)
            self.done, self.root = True, built.value
            return
        frame = stack[-1]
        if frame.merging:
            if frame.merges is None:
                frame.merges = []
            frame.merges.append((frame.key_node, built.node or _stand_in(built)))
        elif frame.source and not frame.is_map:  # a list given to a merge key: its items, only as nodes
            frame.nodes.append(built.node or _stand_in(built))  # type: ignore[union-attr]
        else:
            if self.recorder is not None:
                self.recorder.value(self._path(stack), built.mark)
            if frame.is_map:
                frame.value[frame.key] = built.value
                if self.recorder is not None:
                    if frame.value_marks is None:
                        frame.value_marks = {}
                    frame.value_marks[frame.key] = built.mark
            else:
                if len(frame.value) >= MAX_ITEMS:
                    self._too_many(stack, built.mark)
                frame.value.append(built.value)
            if frame.keep:
                node = built.node or _stand_in(built)
                frame.nodes.append((frame.key_node, node) if frame.is_map else node)  # type: ignore[union-attr]
        if frame.is_map:
            frame.key, frame.merging = _NO_KEY, False
            frame.plain = not frame.keep

    def _close(self, frame: _Frame, stack: list[_Frame]) -> _Built:
        """A collection ends; a mapping with merge keys takes their entries first, explicit ones winning."""
        value = frame.value
        nodes = frame.nodes or []
        if frame.merges:
            node = MappingNode(_MAP, frame.merges, frame.mark)
            try:
                self.loader.flatten_mapping(node)
            except yaml.YAMLError as err:
                self._hold(err)
                return _OPEN
            value = {}
            for key_node, value_node in node.value:
                value[key_node.built] = value_node.built
                self.deepest = max(self.deepest, len(stack) + 1 + value_node.height)
            value.update(frame.value)
            nodes = node.value + nodes
            if self.recorder is not None:
                self._record_merged(frame, node.value, self._path(stack + [frame])[:-1])
        height = 0
        if frame.saved is not None:
            height = self.deepest - len(stack)
            self.deepest = max(frame.saved, self.deepest)
        built = _Built(value, frame.mark, self._size() - frame.start, height, None)
        if frame.keep:
            stand_in = (MappingNode(_MAP, nodes, frame.mark) if frame.is_map
                        else SequenceNode(_SEQ, nodes, frame.mark))
            stand_in.built, stand_in.height = value, height
            built = built._replace(node=stand_in)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = built
        return built

    def _record_merged(self, frame: _Frame, merged: list[tuple[Node, Node]], path: Path) -> None:
        """While locating: merged entries point into the mapping they came from, unless written here too."""
        assert self.recorder is not None
        for key_node, value_node in merged:
            self.recorder.key(path + (key_node.built,), key_node.start_mark)
            self.recorder.value(path + (key_node.built,), value_node.start_mark)
        for key, mark in frame.written.items():
            self.recorder.key(path + (key,), mark)
            self.recorder.value(path + (key,), frame.value_marks[key])  # type: ignore[index]


def _scalar_node(tag: str, event: Any, value: Any) -> Node:
    """A scalar as PyYAML's merge code sees it: its tag, its text and its mark, and what it was built into."""
    node = ScalarNode(tag, event.value, event.start_mark, event.start_mark)
    node.built, node.height = value, 0
    return node


def _stand_in(built: _Built) -> Node:
    """A node that stands for a built value where no merge key can look inside it."""
    node: Node
    if isinstance(built.value, dict):
        node = MappingNode(_MAP, [], built.mark)
    elif isinstance(built.value, list):
        node = SequenceNode(_SEQ, [], built.mark)
    else:
        node = ScalarNode(_STR, "", built.mark, built.mark)
    node.built, node.height = built.value, built.height
    return node


def location_of(mark: Any) -> Location | None:
    return Location(mark.line + 1, mark.column + 1) if mark is not None else None

