"""Playbooks from text: YAML with locations, schema and structure checks, the run plan, parameters."""
from services.playbook.diagnostics import CODES, Diagnostic, PlaybookInvalid
from services.playbook.limits import MAX_BYTES, MAX_STEPS, too_large
from services.playbook.parameters import resolve_parameters
from services.playbook.plan import derive_plan, topological_order
from services.playbook.references import Reference, find_references
from services.playbook.validate import LoadedPlaybook, load_playbook, validate_playbook

__all__ = ["CODES", "MAX_BYTES", "MAX_STEPS", "Diagnostic", "LoadedPlaybook", "PlaybookInvalid", "Reference",
           "derive_plan", "find_references", "load_playbook", "resolve_parameters", "too_large",
           "topological_order", "validate_playbook"]
