"""Playbooks from text: YAML with locations, schema and structure checks, the run plan, parameters.

Each name loads its module when first asked for: readers of a run's plan (the CLI's `status`) do not pay
for the YAML reader and the shell analysis that checking a playbook needs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.lazy_names import lazy_names

if TYPE_CHECKING:
    from services.playbook.diagnostics import CODES, Diagnostic, PlaybookInvalid
    from services.playbook.limits import MAX_BYTES, MAX_STEPS, too_large
    from services.playbook.parameters import resolve_parameters
    from services.playbook.plan import derive_plan, topological_order
    from services.playbook.references import Reference, find_references
    from services.playbook.validate import LoadedPlaybook, load_playbook, validate_playbook

_MODULES = {
    "CODES": "diagnostics", "Diagnostic": "diagnostics", "PlaybookInvalid": "diagnostics",
    "MAX_BYTES": "limits", "MAX_STEPS": "limits", "too_large": "limits",
    "resolve_parameters": "parameters",
    "derive_plan": "plan", "topological_order": "plan",
    "Reference": "references", "find_references": "references",
    "LoadedPlaybook": "validate", "load_playbook": "validate", "validate_playbook": "validate",
}

__all__ = ["CODES", "MAX_BYTES", "MAX_STEPS", "Diagnostic", "LoadedPlaybook", "PlaybookInvalid", "Reference",
           "derive_plan", "find_references", "load_playbook", "resolve_parameters", "too_large",
           "topological_order", "validate_playbook"]


__getattr__ = lazy_names(__name__, _MODULES, globals())
