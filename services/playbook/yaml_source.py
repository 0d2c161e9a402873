"""YAML text to plain data that can still say where every key and value was written.

The text is read as a stream of parser events (libyaml's parser when built in) into data
(`yaml_events`), never as a composed node tree: a tree of nodes, each with its marks,
costs ~500 bytes a value and kept a 10,000-step playbook's load at 100 MB. Locations are
not kept at all: `YamlDocument.locate` reads the text again for just the paths it is
asked about, which only a playbook with findings ever needs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.reader import ReaderError

from services.playbook.diagnostics import Path
from services.playbook.yaml_events import (ALIASED_VALUES, HIGHEST_INTEGER, LOWEST_INTEGER, MAX_DEPTH, MAX_ITEMS,
                                           MAX_VALUES, Builder, DuplicateKey, Loader, Location, Recorder,
                                           YamlSyntaxError, YamlTooLarge, location_of)

__all__ = ["ALIASED_VALUES", "HIGHEST_INTEGER", "LOWEST_INTEGER", "MAX_DEPTH", "MAX_ITEMS", "MAX_VALUES",
           "DuplicateKey", "Location", "YamlDocument", "YamlSyntaxError", "YamlTooLarge", "load_yaml"]


@dataclass(frozen=True)
class YamlDocument:
    data: Any
    duplicates: list[DuplicateKey] = field(default_factory=list)
    text: str = field(default="", repr=False)
    odd_keys: list[Path] = field(default_factory=list)  # where a key is no text (a number, true, null)

    def locate(self, path: Path, *, key: bool = False) -> Location:
        """Where `path` is written; for a path not in the file (a default), its nearest written parent."""
        return self.locate_all([(path, key)])[0]

    def locate_all(self, wanted: Sequence[tuple[Path, bool]]) -> list[Location]:
        """`locate` for many paths at once, reading the text once: (path, whether the key is meant)."""
        if not wanted:
            return []
        paths = {path[:end] for path, _ in wanted for end in range(len(path) + 1)}
        builder = _parse(self.text, Recorder(paths, {path for path, key in wanted if key}))
        found, keys = builder.recorder.values, builder.recorder.keys  # type: ignore[union-attr]
        located = []
        for path, key in wanted:
            if key and path in keys:
                located.append(keys[path])
                continue
            while path and path not in found:
                path = path[:-1]
            located.append(found.get(path, Location(1, 1)))
        return located


def load_yaml(text: str) -> YamlDocument:
    """Parse one YAML document with the safe loader's rules, noting duplicate keys; pure and thread-safe."""
    builder = _parse(text, None)
    return YamlDocument(builder.data, builder.duplicates, text, builder.odd_keys)


def _parse(text: str, recorder: Recorder | None) -> Builder:
    builder: Builder | None = None
    try:
        loader = Loader(text)
        try:
            builder = Builder(loader, recorder)
            builder.run()
            return builder
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        raise YamlSyntaxError(_describe(err), location_of(err.problem_mark or err.context_mark),
                              builder.step_being_read() if builder else None) from err
    except ReaderError as err:
        line = text.count("\n", 0, err.position)
        column = err.position - (text.rfind("\n", 0, err.position) + 1)
        raise YamlSyntaxError(f"the character {chr(err.character)!r} is not allowed in YAML",
                              Location(line + 1, column + 1)) from err


def _describe(err: yaml.MarkedYAMLError) -> str:
    problem = (err.problem or "").removeprefix("but ")
    if err.context and err.context_mark is not None:
        return f"{err.context} (line {err.context_mark.line + 1}): {problem}"
    return problem or err.context or "not valid YAML"

