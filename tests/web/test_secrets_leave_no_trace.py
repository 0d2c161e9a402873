"""The proof: runs whose steps print a secret raw, reversed, base64-encoded (three alignments, and base64url),
URL-encoded, in hex, folded, and cut mid-secret by max_output_bytes, and whose failure, remediation and
rollback print it too, leave no trace of it in any of those forms: not in any stored message (headers
included), any log line, any web view, the live output, or the projector's snapshot."""
from __future__ import annotations

import base64
import json
import logging
import sys
import urllib.parse
import uuid

import aiohttp
import pytest

from events import subjects
from events.commands import StartRun
from tests.helpers import playbook_yaml, until, wait_for_end

pytestmark = pytest.mark.integration

SECRET = "s3cr3t/Va+lue 9f2c=Zq8"
URL_ENCODE = (f"{sys.executable} -c 'import sys, urllib.parse as u; print(u.quote(sys.argv[1], safe=\"\")); "
              "print(u.quote_plus(sys.argv[1]))' \"$S\"")
EVERY_FORM = "; ".join([
    'printf "%s\\n" "$S"',
    'printf "%s" "$S" | rev; echo',
    'printf "%s" "$S" | base64 -w0; echo',
    'printf "x%s" "$S" | base64 -w0; echo',
    'printf "xy%s" "$S" | base64 -w0; echo',
    'printf "xyz%s" "$S" | base64 -w0 | tr "+/" "-_"; echo',
    'printf "%s" "$S" | base64 -w 8; echo',
    'printf "%s" "$S" | od -An -tx1 | tr -d " \\n"; echo',
    'printf "%s" "$S" | od -An -tx1 | tr -d " \\n" | tr a-f A-F; echo',
    URL_ENCODE,
    'printf "%s" "$S" | fold -w3; echo',
])
WITH_SECRET = {"S": "${secret:api_token}"}


def traces(secret: str) -> dict[str, str]:
    """Every form of the secret the test looks for, each long enough not to occur by chance."""
    data = secret.encode()
    found = {"raw": secret, "reversed": secret[::-1], "hex": data.hex(), "HEX": data.hex().upper(),
             "percent-encoded": urllib.parse.quote(secret, safe=""), "form-encoded": urllib.parse.quote_plus(secret),
             "json": json.dumps(secret)[1:-1], "head cut by a size cap": secret[:7]}
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        inner = encoded[k + 2:(4 * (k + len(data))) // 3 - 2]
        found[f"base64 at offset {k}"] = inner
        found[f"base64url at offset {k}"] = inner.replace("+", "-").replace("/", "_")
    return found


def leaks(blob: str | bytes, where: str) -> list[str]:
    text = blob.decode(errors="replace") if isinstance(blob, bytes) else blob
    flat = text.replace("\\n", "").replace("\n", "").replace("\r", "")
    return [f"{form} in {where}" for form, printed in traces(SECRET).items() if printed in flat]


async def test_a_secret_printed_in_every_form_leaves_no_trace(engine, web_server, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("PLAYBOOK_SECRET_API_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    marker = tmp_path / "printed"
    run_id = f"leaky-{uuid.uuid4().hex[:8]}"
    text = playbook_yaml([
        {"id": "every_form", "action": "shell", "timeout_seconds": 10, "args": {
            "command": f"{{ {EVERY_FORM}; }} | tee {marker}", "env": WITH_SECRET},
         "rollback": [{"action": "shell", "args": {"command": 'echo "undoing with $S" >&2', "env": WITH_SECRET}}]},
        {"id": "cut_short", "action": "shell", "timeout_seconds": 10,
         "args": {"command": 'printf "head-%s-tail" "$S"; printf "err-%s-tail" "$S" >&2', "env": WITH_SECRET,
                  "max_output_bytes": 12}},
        {"id": "fails_loudly", "action": "shell", "timeout_seconds": 10, "args": {
            "command": 'echo "remediate-me: login refused for $(printf "%190s") $S" >&2; exit 1', "env": WITH_SECRET}},
    ], on_failure="rollback", error_handlers=[{
        "pattern": "remediate-me", "then": "fail",
        "run": {"action": "shell", "args": {"command": 'echo "refreshing $S" | base64', "env": WITH_SECRET},
                "timeout_seconds": 10}}])

    live: list[bytes] = []

    async def keep(msg) -> None:
        live.append(msg.data)

    sub = await engine.nc.subscribe(subjects.live_output_of_run(run_id), cb=keep)
    reply = await engine.send(StartRun(playbook=text, run_id=run_id))
    assert reply.accepted, reply
    events = await wait_for_end(engine, run_id)
    await engine.nc.flush()
    await sub.unsubscribe()

    names = [type(e).__name__ for e in events]
    assert {"StepRemediated", "StepRolledBack", "RollbackCompleted"} <= set(names), names
    printed = marker.read_text()
    assert SECRET in printed and leaks(printed, "what the step printed")   # the step really printed every form
    assert len(leaks(printed, "")) >= 12

    stored = await _every_stored_message(engine)
    views = await _web_views(web_server, engine, run_id, {"every_form", "cut_short", "fails_loudly"})
    snapshot = await _projector_snapshot(web_server)
    found = [leak for i, message in enumerate(stored) for leak in leaks(message, f"stored message {i}")]
    found += [leak for i, line in enumerate(live) for leak in leaks(line, f"live line {i}")]
    found += [leak for record in caplog.records for leak in leaks(_logged(record), f"log line {record.name}")]
    found += [leak for where, body in views.items() for leak in leaks(body, where)]
    found += leaks(snapshot, "the projector's snapshot")
    assert found == []

    assert live and b"***" in b"".join(live)                # redacted, not silently dropped
    cut = next(e for e in events if type(e).__name__ == "StepSucceeded" and e.step_id == "cut_short")
    assert cut.outputs["stdout"].startswith("head-\n[... truncated") and cut.outputs["stderr"].startswith("err-\n")
    failed = next(e for e in events if type(e).__name__ == "StepFailed")
    assert failed.error.endswith("…") and "remediate-me" in failed.error


def _logged(record: logging.LogRecord) -> str:
    return logging.Formatter().format(record)


async def _every_stored_message(client) -> list[bytes]:
    """Every message of every stream, with its headers."""
    js = client.nc.jetstream()
    payloads = []
    for stream in await js.streams_info():
        sub = await js.subscribe(f"{subjects.PREFIX}.>", stream=stream.config.name, ordered_consumer=True)
        for _ in range(stream.state.messages):
            msg = await sub.next_msg(timeout=5)
            payloads.append(msg.data + json.dumps(msg.headers or {}).encode())
        await sub.unsubscribe()
    return payloads


async def _web_views(server, engine, run_id: str, steps: set[str]) -> dict[str, str]:
    async with aiohttp.ClientSession(server.url, headers=engine.headers()) as http:
        async def ended() -> bool:     # the web server folds events on its own
            return (await (await http.get(f"/api/runs/{run_id}")).json()).get("status") in ("failed", "rolled_back")
        await until(ended, timeout=15, what="the run ended in the web's view")
        paths = [f"/api/runs/{run_id}", f"/api/runs/{run_id}/events", f"/api/runs/{run_id}/logs", "/api/runs",
                 "/api/audit", "/api/metrics", "/metrics", "/api/circuits"]
        paths += [f"/api/runs/{run_id}/logs?step={step}" for step in steps]
        return {path: await (await http.get(path)).text() for path in paths}


async def _projector_snapshot(server) -> bytes:
    projector = server.backend.projector
    await projector.stop()                                  # it saves the views on the way out
    return projector.snapshot.read_bytes()
