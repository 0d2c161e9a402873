"""JSON Schema of every event and command, generated from the Structs."""
from __future__ import annotations

from typing import Any

import msgspec

from events.circuit import CIRCUIT_EVENT_TYPES
from events.commands import COMMAND_TYPES, Reply
from events.identity import IDENTITY_COMMAND_TYPES, IDENTITY_EVENT_TYPES, IdentityReply
from events.output import OUTPUT_TYPES
from events.playbook import Playbook
from events.run import RUN_EVENT_TYPES


def json_schema() -> dict[str, Any]:
    events = (*RUN_EVENT_TYPES, *CIRCUIT_EVENT_TYPES, *IDENTITY_EVENT_TYPES)
    commands = (*COMMAND_TYPES, *IDENTITY_COMMAND_TYPES)
    types = (*events, *commands, Reply, IdentityReply, Playbook, *OUTPUT_TYPES)
    (refs, components) = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Playbook Engine events and commands",
        "events": {t.__name__: ref for t, ref in zip(events, refs)},
        "commands": {t.__name__: ref for t, ref in zip(commands, refs[len(events):])},
        "output": {t.__name__: ref for t, ref in zip(OUTPUT_TYPES, refs[-len(OUTPUT_TYPES):])},
        "$defs": components,
    }
