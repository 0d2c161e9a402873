"""The OpenAPI 3.1 document of the JSON API, served at `GET /api/openapi.json`.

Request bodies, and the run-list, log, audit and diagnostic items, are the msgspec
Structs the handlers decode and the views fold: their schemas are generated, so they
cannot drift. The paths, parameters and the errors each operation can answer are
written out here, next to each other, as the handlers in api.py and streams.py do them.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
import msgspec.inspect
from aiohttp import web

from events import subjects
from events.insights import Correlation, Evidence, Insights, PlaybookInsights, StepInsights, TargetInsights
from projections.audit import AUDIT_ACTIONS, AuditEntry
from projections.run_list import RunSummary
from projections.step_logs import LogEntry
from services.playbook.diagnostics import Diagnostic
from ui.web.api import MAX_LIMIT, STATUS_OF_CODE
from ui.web.access import SESSION_COOKIE
from ui.web.bodies import BODIES

JSON = "application/json"
REF = "#/components/schemas/{name}"
# Every error code and its status: the run service's, plus those the web edge adds.
STATUS = {**STATUS_OF_CODE, "not_found": 404, "unsupported_media_type": 415, "cross_origin": 403, "unknown_host": 421}
# What any request that needs a credential may answer, and what any change may answer besides.
SIGNED_IN = ("unauthenticated", "forbidden", "too_many_failures", "unknown_host")
CHANGE = (*SIGNED_IN, "unsupported_media_type", "cross_origin", "forged_actor")


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


STRUCTS: tuple[type[msgspec.Struct], ...] = (*BODIES, RunSummary, LogEntry, AuditEntry, Diagnostic,
                                              Insights, PlaybookInsights, StepInsights, TargetInsights, Correlation,
                                              Evidence)


def _components() -> dict[str, Any]:
    _, schemas = msgspec.json.schema_components(STRUCTS, ref_template=REF)
    for struct in STRUCTS:
        _mark_date_times(struct, schemas[struct.__name__])
    return {**schemas, **HAND_WRITTEN}


def _mark_date_times(struct: type, schema: dict[str, Any]) -> None:
    """msgspec gives datetime fields as plain strings: say which strings they are."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        if any(isinstance(kind, msgspec.inspect.DateTimeType) for kind in kinds):
            prop = schema["properties"][field.encode_name]
            for option in prop.get("anyOf", [prop]):
                if option.get("type") == "string":
                    option["format"] = "date-time"


_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

# Response shapes built from dicts in the handlers (no Struct to generate them from).
HAND_WRITTEN: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "stable, e.g. unknown_run; an unknown path or method "
                                                          "under /api is not_found / method_not_allowed, and a "
                                                          "bug in the web server server_error (500)"},
                "message": {"type": "string", "description": "what is wrong, in words a user can act on"},
                "details": {"type": "array", "description": "for invalid_playbook: the diagnostics"},
            },
        }},
    },
    "RunList": {
        "type": "object", "required": ["position", "total", "runs"],
        "properties": {"position": {"type": "integer", "description": "the projector's stream position"},
                       "total": {"type": "integer", "description": "runs matching, before the limit"},
                       "runs": {"type": "array", "items": ref("RunSummary"), "description": "newest first"}},
    },
    "Accepted": {
        "type": "object", "required": ["accepted", "events"],
        "properties": {"accepted": {"const": True}, "run_id": {"type": ["string", "null"]},
                       "events": {"type": "array", "items": {"type": "object"},
                                  "description": "the events the command recorded; [] if it had taken effect already"}},
    },
    "RunView": {
        "type": "object", "required": ["run_id", "status", "steps", "may", "timeline"],
        "description": "projections/run_view.py run_view(), plus the timeline of its events",
        "properties": {
            "run_id": {"type": "string"}, "status": {"type": "string"}, "playbook": {"type": ["string", "null"]},
            "steps": {"type": "array", "items": {"type": "object"}},
            "quarantined": {"type": "array", "description": "events that do not fit the run's state: not applied",
                            "items": {"type": "object", "required": ["seq", "event", "reason"],
                                      "properties": {"seq": {"type": "integer"}, "event": {"type": "string"},
                                                     "step_id": {"type": ["string", "null"]},
                                                     "reason": {"type": "string"}}}},
            "may": {"type": "object", "required": ["pause", "resume", "cancel", "rollback", "retry", "insights",
                                                       "gates"],
                    "description": "what the caller's grants allow on this run (each gate: approve, reject; "
                                   "`insights`: reading its playbook's, GET /api/insights); the run's state and "
                                   "four eyes are still the run service's to decide",
                    "properties": {"gates": {"type": "object", "additionalProperties": {"type": "object"}}},
                    "additionalProperties": {"type": "boolean"}},
            "timeline": {"type": "array", "items": {
                "type": "object", "required": ["seq", "at", "kind"],
                "properties": {"seq": {"type": "integer"}, "at": {"type": "string"}, "kind": {"type": "string"},
                               "step_id": {"type": ["string", "null"]}, "attempt": {"type": ["integer", "null"]},
                               "detail": {"type": ["string", "null"]}, "actor": {"type": ["string", "null"]}}}},
        },
    },
    "StoredEvent": {
        "type": "object", "required": ["seq", "type", "run_id", "at"],
        "properties": {"seq": {"type": "integer", "description": "stream sequence"},
                       "type": {"type": "string", "description": "the event's class, e.g. StepSucceeded"},
                       "run_id": {"type": "string"}, "at": {"type": "string", "format": "date-time"}},
    },
    "Validation": {
        "type": "object", "required": ["valid", "errors", "diagnostics"],
        "properties": {"valid": {"type": "boolean"}, "errors": {"type": "integer"},
                       "diagnostics": {"type": "array", "items": ref("Diagnostic")}},
    },
    "PlaybookVersion": {
        "type": "object", "description": "one published version (ui/catalog_client.py version_json)",
        "required": ["id", "name", "version", "digest", "author", "published_at", "bytes", "steps", "description",
                     "source", "validation"],
        "properties": {"id": {"type": "string", "description": "name@version: what POST /api/runs takes"},
                       "name": {"type": "string"}, "version": {"type": "string"},
                       "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$",
                                  "description": "of the YAML text; runs of this version pin it"},
                       "author": {"type": "string"}, "published_at": {"type": "string", "format": "date-time"},
                       "bytes": {"type": "integer"}, "steps": {"type": "integer"}, "description": {"type": "string"},
                       "source": {"type": "string"},
                       "validation": {"type": "object", "description": "counts by severity and the codes found"}},
    },
    "PlaybookSummary": {"allOf": [ref("PlaybookVersion"), {
        "type": "object", "required": ["versions"], "description": "a name's latest version",
        "properties": {"versions": {"type": "array", "items": {"type": "string"}, "description": "newest first"}}}]},
    "PlaybookDetail": {"allOf": [ref("PlaybookVersion"), {
        "type": "object", "required": ["yaml", "parameters", "environments"],
        "properties": {"yaml": {"type": "string"},
                       "parameters": {"type": "array", "items": {"type": "object"},
                                      "description": "the playbook's parameters (name, type, default, ...)"},
                       "environments": {"type": "array", "items": {"type": "string"}}}}]},
    "Published": {"allOf": [ref("PlaybookVersion"), {
        "type": "object", "required": ["new"],
        "properties": {"new": {"type": "boolean", "description": "false: this text was that version already"}}}]},
    "PlaybookDiff": {
        "type": "object", "required": ["name", "from", "to", "diff"],
        "properties": {"name": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
                       "diff": {"type": "string", "description": "unified diff of the texts; empty if the same"}},
    },
    "Metrics": {
        "type": "object", "description": "projections/metrics.py Metrics.as_json()",
        "required": ["runs", "runs_by_status", "steps", "retries", "errors_over_time", "approvals_waiting",
                     "circuits", "circuit_openings", "abandoned_messages", "playbooks"],
        "properties": {
            "runs": {"type": "object", "additionalProperties": {"type": "object"}},
            "runs_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "steps": {"type": "array", "items": {"type": "object"}},
            "retries": {"type": "object"},
            "errors_over_time": {"type": "array", "items": {"type": "object"}},
            "approvals_waiting": {"type": "integer"},
            "circuits": {"type": "object", "additionalProperties": {"enum": ["closed", "open", "half_open"]}},
            "circuit_openings": {"type": "object", "additionalProperties": {"type": "integer"}},
            "abandoned_messages": {"type": "object", "additionalProperties": {"type": "integer"},
                                   "description": "messages each service (consumer) gave up on, all time"},
            "playbooks": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Circuit": {
        "type": "object", "required": ["key", "state", "failures_in_a_row"],
        "properties": {"key": {"type": "string"}, "state": {"enum": ["closed", "open", "half_open"]},
                       "failures_in_a_row": {"type": "integer"}, "open_until": _NULLABLE_TIME,
                       "reason": {"type": ["string", "null"]}, "last_change": _NULLABLE_TIME},
    },
    "SignedIn": {
        "type": "object", "required": ["name", "kind", "groups", "grants"],
        "properties": {"name": {"type": "string"}, "kind": {"enum": ["person", "agent"]},
                       "groups": {"type": "array", "items": {"type": "string"}},
                       "grants": {"type": "array", "items": {"type": "string"},
                                  "description": "ROLE[:PLAYBOOKS][@ENVIRONMENTS]"},
                       "on_behalf_of": {"type": ["string", "null"]}},
    },
    "Rebuilt": {
        "type": "object", "required": ["rebuild", "events", "position", "runs", "seconds"],
        "description": "Rebuilds run one at a time: askers while one runs join it and share its answer (`rebuild`).",
        "properties": {"rebuild": {"type": "integer"}, "events": {"type": "integer"},
                       "position": {"type": "integer"}, "runs": {"type": "integer"}, "seconds": {"type": "number"}},
    },
}


# -- parameters ----------------------------------------------------------------------------

def path_param(name: str, description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = f"^{pattern}$"
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


RUN_ID = path_param("run_id", "a run id outside the pattern matches no route: 404 not_found", subjects.RUN_ID_PATTERN)
STEP_ID = path_param("step_id", "the gated step", subjects.STEP_ID_PATTERN)
TIME = {"type": "string", "format": "date-time"}


def limit(default: int) -> dict[str, Any]:
    return query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default},
                 "at most this many, newest first")


LIST_RUNS_QUERY = [
    query("status", {"type": "string"}, "comma-separated statuses, e.g. running,paused"),
    query("playbook", {"type": "string"}, "playbook name"),
    query("environment", {"type": "string"}, "environment the run was started in"),
    query("since", TIME, "started at or after (ISO 8601 with a time zone)"),
    query("until", TIME, "started at or before (ISO 8601 with a time zone)"),
    query("active", {"type": "boolean"}, "only runs still going (true) or finished (false)"),
    limit(200),
]
AUDIT_QUERY = [
    query("actor", {"type": "string"}, "who acted"),
    query("run_id", {"type": "string"}, "which run"),
    query("action", {"type": "string"}, "what was done: " + ", ".join(AUDIT_ACTIONS)),
    query("since", TIME, "at or after (ISO 8601 with a time zone)"),
    query("until", TIME, "before (ISO 8601 with a time zone)"),
    limit(500),
]
RESUME_FROM = [
    query("last_event_id", {"type": "string", "pattern": "^[0-9]{1,20}$"},
          "resume after this stream sequence (as the Last-Event-ID header a browser sends on reconnect)"),
    {"name": "Last-Event-ID", "in": "header", "required": False,
     "schema": {"type": "string", "pattern": "^[0-9]{1,20}$"}},
]
# Streams that carry output lines too resume both positions: `<event sequence>.<line sequence in PB_LOGS>`.
RESUME_BOTH = [
    query("last_event_id", {"type": "string", "pattern": r"^[0-9]{1,20}(\.[0-9]{1,20})?$"},
          "resume after these positions, `<event sequence>.<line sequence>` (as the Last-Event-ID header)"),
    {"name": "Last-Event-ID", "in": "header", "required": False,
     "schema": {"type": "string", "pattern": r"^[0-9]{1,20}(\.[0-9]{1,20})?$"}},
]


# -- responses -----------------------------------------------------------------------------

def answer(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _codes(responses: dict[str, Any]) -> list[str]:
    """The error codes already in these responses."""
    return [code for status, response in responses.items() if status >= "400"
            for code in response["description"].split(" or ")]


def errors(*codes: str) -> dict[str, Any]:
    """The error responses answering with these codes, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(STATUS[code], []).append(code)
    return {str(status): {
        "description": " or ".join(found),
        "content": {JSON: {"schema": {"allOf": [ref("Error"), {"properties": {"error": {"properties": {
            "code": {"enum": found}}}}}]}}},
    } for status, found in sorted(by_status.items())}


def body(name: str, required: bool = True) -> dict[str, Any]:
    """A JSON body; every change needs one (`{}` takes every default): without it a POST is a 415."""
    return {"required": required, "content": {JSON: {"schema": ref(name)}}}


def operation(summary: str, responses: dict[str, Any], *, params: Sequence[dict[str, Any]] = (),
              request: dict[str, Any] | None = None, tag: str = "runs", open_to_all: bool = False) -> dict[str, Any]:
    """An operation; unless `open_to_all`, it needs a credential (and, with a body, a JSON one from this origin)."""
    if not open_to_all:
        responses = {**responses, **errors(*SIGNED_IN, *_codes(responses))}
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if open_to_all:
        op["security"] = []
    if params:
        op["parameters"] = list(params)
    if request is not None:
        op["requestBody"] = request
    return op


def sse(summary: str, events: str, params: Sequence[dict[str, Any]], *error_codes: str) -> dict[str, Any]:
    stream = {"description": f"an event stream: {events}",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return {"get": operation(summary, {"200": stream, **errors(*error_codes)}, params=params, tag="streams")}


BODY = ("bad_request", "request_entity_too_large")
COMMAND = (*BODY, "internal_error", "engine_unavailable", "unavailable")
UNKNOWN_RUN = ("unknown_run", "not_found", "unreadable_run")


def control(summary: str) -> dict[str, Any]:
    return {"post": operation(summary, {"200": answer(ref("Accepted")),
                                        **errors(*COMMAND, *UNKNOWN_RUN, "illegal_transition")},
                              params=[RUN_ID], request=body("ControlBody"))}


def decision(summary: str) -> dict[str, Any]:
    return {"post": operation(summary, {"200": answer(ref("Accepted")),
                                        **errors(*COMMAND, *UNKNOWN_RUN, "approval_refused")},
                              params=[RUN_ID, STEP_ID], request=body("DecisionBody"))}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


RUN = "/api/runs/{run_id}"


@functools.cache
def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/runs": {
            "get": operation("List runs, newest first", {"200": answer(ref("RunList")), **errors("bad_request")},
                             params=LIST_RUNS_QUERY),
            "post": operation("Start a run from YAML text or a stored playbook", {
                "201": answer(ref("Accepted"), "started"),
                **errors(*COMMAND, "unknown_playbook", "invalid_playbook", "run_exists", "too_large", "unavailable")},
                request=body("StartBody")),
        },
        RUN: {"get": operation("One run: its view and timeline", {
            "200": answer(ref("RunView")), **errors(*UNKNOWN_RUN, "engine_unavailable")}, params=[RUN_ID])},
        RUN + "/events": {"get": operation("A run's stored events", {
            "200": answer(array(ref("StoredEvent"))), **errors("bad_request", *UNKNOWN_RUN, "engine_unavailable")},
            params=[RUN_ID, query("after", {"type": "integer", "minimum": 0}, "only events after this sequence")])},
        RUN + "/logs": {"get": operation("A run's step logs", {
            "200": answer(array(ref("LogEntry"))), **errors("bad_request", *UNKNOWN_RUN, "engine_unavailable")},
            params=[RUN_ID, query("step", {"type": "string"}, "one step's logs"),
                    query("attempt", {"type": "integer", "minimum": 1}, "one attempt's logs")])},
        RUN + "/pause": control("Pause a running run"),
        RUN + "/resume": control("Resume a paused run"),
        RUN + "/cancel": control("Cancel a run (again: accepted, nothing new recorded)"),
        RUN + "/rollback": control("Roll back a finished run by hand"),
        RUN + "/retry": {"post": operation(
            "Retry a failed or cancelled run in place: its failed steps (or from_step) and what follows run again", {
                "200": answer(ref("Accepted")),
                **errors(*COMMAND, *UNKNOWN_RUN, "illegal_transition", "unknown_step", "unknown_playbook",
                         "invalid_playbook", "incompatible_playbook")},
            params=[RUN_ID], request=body("RetryBody"))},
        RUN + "/steps/{step_id}/approve": decision("Approve a step's gate"),
        RUN + "/steps/{step_id}/reject": decision("Reject a step's gate (the step fails)"),
        "/api/validate": {"post": operation("Validate playbook text; every problem with line and column", {
            "200": answer(ref("Validation")), **errors("bad_request", "request_entity_too_large")},
            request=body("ValidateBody"), tag="playbooks")},
        "/api/playbooks": {
            "get": operation("The catalog: each playbook's latest version", {
                "200": answer(array(ref("PlaybookSummary"))), **errors("engine_unavailable")}, tag="playbooks"),
            "post": operation("Publish a version (the playbook's `version:`, or `version`)", {
                "201": answer(ref("Published"), "published"), "200": answer(ref("Published"), "already that version"),
                **errors(*COMMAND, "invalid_playbook", "version_exists", "too_large", "unavailable")},
                request=body("PublishBody"), tag="playbooks"),
        },
        "/api/playbooks/{reference}": {"get": operation("One version with its YAML", {
            "200": answer(ref("PlaybookDetail")), **errors("unknown_playbook", "engine_unavailable")},
            params=[path_param("reference", "name (its latest version) or name@version")], tag="playbooks")},
        "/api/playbooks/{name}/versions": {"get": operation("A playbook's versions, newest first", {
            "200": answer(array(ref("PlaybookVersion"))), **errors("unknown_playbook", "engine_unavailable")},
            params=[path_param("name", "the playbook's name")], tag="playbooks")},
        "/api/playbooks/{name}/diff": {"get": operation("What changed between two versions", {
            "200": answer(ref("PlaybookDiff")), **errors("bad_request", "unknown_playbook", "engine_unavailable")},
            params=[path_param("name", "the playbook's name"),
                    query("from", {"type": "string", "minLength": 1}, "the older version", required=True),
                    query("to", {"type": "string", "minLength": 1}, "the newer version", required=True)],
            tag="playbooks")},
        "/api/metrics": {"get": operation("Engine metrics (the dashboard's)", {"200": answer(ref("Metrics"))},
                                          tag="views")},
        "/api/audit": {"get": operation("Who did what, newest first", {
            "200": answer(array(ref("AuditEntry"))), **errors("bad_request")}, params=AUDIT_QUERY, tag="views")},
        "/api/circuits": {"get": operation("Circuit breakers", {
            "200": answer(array(ref("Circuit"))), **errors("engine_unavailable")}, tag="circuits")},
        "/api/circuits/reset": {"post": operation("Close a breaker by hand", {
            "200": answer(ref("Accepted")), **errors(*COMMAND, "unknown_circuit")}, request=body("ResetCircuitBody"),
            tag="circuits")},
        "/api/insights": {"get": operation("What past runs taught, and what to change: per playbook, step and target", {
            "200": answer(ref("Insights")), **errors("engine_unavailable")},
            params=[query("playbook", {"type": "string"}, "one playbook and the targets its steps call"),
                    query("environment", {"type": "string"}, "its runs in one environment (empty: those without "
                          "one); by default every environment the caller may read")],
            tag="views")},
        "/api/projections/rebuild": {"post": operation("Fold the views again from the first event", {
            "200": answer(ref("Rebuilt")), **errors("bad_request")}, request=body("RebuildBody"), tag="views")},
        "/api/runs/stream": sse("The run list, live", "`snapshot` {position, total, runs, left_out_from: the latest "
                                "start time a run left out of it may have, or null}, then `run` (a RunSummary) "
                                "per change", RESUME_FROM, "bad_request"),
        RUN + "/stream": sse("One run, live", "`event` {seq, type, event, timeline} per event, `view` (a RunView, "
                             "with `may`, without its timeline) when caught up; "
                             "with logs=1 also `log` [LogEntry...], `live` output lines (OutputLine) of running "
                             "steps from their first line and `end` (OutputEnded) per attempt; ids then "
                             "`<event sequence>.<line sequence>`",
                             [RUN_ID, query("logs", {"type": "string", "enum": ["0", "1", "true", "false"]},
                                            "1: carry the run's logs too (one connection per page)"), *RESUME_BOTH],
                             "bad_request", *UNKNOWN_RUN, "engine_unavailable"),
        RUN + "/logs/stream": sse("One run's logs, live", "`log` [LogEntry...] per event that carries log text, "
                                  "`live` output lines (OutputLine) of running steps from their first line, `end` "
                                  "(OutputEnded) per attempt; ids `<event sequence>.<line sequence>`",
                                  [RUN_ID, query("step", {"type": "string"}, "one step's logs"), *RESUME_BOTH],
                                  "bad_request", *UNKNOWN_RUN, "engine_unavailable"),
        "/api/metrics/stream": sse("The metrics, live", "`metrics` (as /api/metrics) at most once a second", []),
        "/api/session": {
            "post": operation("Sign in with a token or a one-time code: sets the session cookie", {
                "201": answer(ref("SignedIn"), "signed in"),
                **errors("bad_request", "unauthenticated", "too_many_failures", "unsupported_media_type",
                         "cross_origin", "unknown_host", "engine_unavailable", "unavailable")},
                request=body("SignInBody"), tag="session", open_to_all=True),
            "get": operation("Who is signed in", {"200": answer(ref("SignedIn"))}, tag="session"),
            "delete": operation("Sign out: the session is revoked on every replica", {
                "200": answer({"type": "object"}), **errors("bad_request")},
                request=body("SignOutBody", required=False), tag="session"),
        },
        "/healthz": {"get": operation("The process is up", {"200": answer({"type": "object"})}, tag="health",
                                      open_to_all=True)},
        "/readyz": {"get": operation("NATS, stream and projector ready", {
            "200": answer({"type": "object"}), "503": answer({"type": "object"}, "not ready; the body says why")},
            tag="health", open_to_all=True)},
        "/metrics": {"get": operation("Prometheus metrics", {"200": {
            "description": "Prometheus text format (OpenMetrics if the Accept header asks for it)",
            "content": {"text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}}}}},
            tag="health")},
    }
    for operations in paths.values():
        for method, op in operations.items():
            if method != "get" and op.get("security") != []:    # a change: JSON, from this origin
                op["responses"] = {**op["responses"], **errors(*CHANGE, *_codes(op["responses"]))}
            if "requestBody" in op:     # read_body: a body that is not the Struct, or past the server's size
                op["responses"] = {**op["responses"], **errors(*_codes(op["responses"]), *BODY)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Playbook Engine API", "version": "1",
                 "description": "Send an API token as `Authorization: Bearer <token>` (the dashboard holds a session "
                                "cookie instead). Every command is recorded with the verified caller as its actor. "
                                "A change must be JSON and, with a cookie, come from this origin. "
                                "Errors are JSON: {\"error\": {\"code\", \"message\", \"details\"}}."},
        "paths": paths,
        "security": [{"token": []}, {"session": []}],
        "components": {"schemas": _components(), "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer", "description": "an API token: `playbook token create`"},
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                        "description": "the dashboard's session, from POST /api/session"}}},
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
