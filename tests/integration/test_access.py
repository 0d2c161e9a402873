"""Who may do what, at every door: role x action x door (HTTP, a NATS command, the CLI) -> allowed or refused.

One table says what each role may do, with scoped grants (a playbook pattern, an
environment) and the unsafe-shell grant; each door is driven as its users drive it (the
JSON API with a bearer token, `EngineClient.send`, the `playbook` command's own code with
`$PLAYBOOK_TOKEN`). A refusal must be answered as one and recorded in PB_ACCESS with the
principal, the door and the action; an allowed command must not be refused for access
(the run's state may still say no, as a second pause does).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from events.commands import ApproveStep, PauseRun, ResetCircuit, RetryRun, StartRun
from events.identity import caller_headers
from services.settings import Settings
from tests.helpers import person, playbook_yaml, refusals
from ui.cli.main import parser
from ui.cli.render import DENIED_CODES, EXIT_DENIED
from ui.client import EngineClient
from ui.catalog_client import CatalogClient, Published
from ui.identity_client import IdentityClient

pytestmark = pytest.mark.integration

DEPLOY_WEB = playbook_yaml([{"id": "ship", "action": "noop", "approval_gate": {"required_approvers": ["release"]}},
                            {"id": "verify", "action": "noop"}],
                           name="deploy-web", environments={"staging": {}, "production": {}})
BILLING = playbook_yaml([{"id": "report", "action": "noop"}], name="billing-report",
                        environments={"staging": {}})

# Who holds what: each a token of their own.
ROLES = {
    "viewer": ("vic", ["viewer"]),
    "operator": ("otto", ["operator"]),
    "scoped operator": ("sally", ["operator:deploy-*@staging"]),
    "approver": ("abby", ["approver"]),                    # in the group `release` the gate names
    "admin": ("ada", ["admin"]),
    "operator with unsafe shell": ("uma", ["operator", "unsafe_shell"]),
    "revoked operator": ("rex", ["operator"]),              # the token is revoked before anything is asked
}
ACTIONS = ("start deploy-web in staging", "start deploy-web in production", "start billing-report in staging",
           "start the published deploy-web in staging",
           "start with allow_unsafe_shell", "approve the release gate", "pause the run", "retry the run",
           "reset a breaker")
EVERYONE_WHO_OPERATES = {"operator", "admin", "operator with unsafe shell"}
ALLOWED: dict[str, set[str]] = {
    "start deploy-web in staging": EVERYONE_WHO_OPERATES,                     # sally: her text names itself
    "start the published deploy-web in staging": EVERYONE_WHO_OPERATES | {"scoped operator"},
    "start deploy-web in production": EVERYONE_WHO_OPERATES,                  # sally: staging only
    "start billing-report in staging": EVERYONE_WHO_OPERATES,                 # sally: deploy-* only
    "start with allow_unsafe_shell": {"operator with unsafe shell"},          # no role implies it, admin neither
    "approve the release gate": {"approver"},                                 # an admin not named is refused too
    "pause the run": EVERYONE_WHO_OPERATES | {"scoped operator"},
    "retry the run": EVERYONE_WHO_OPERATES | {"scoped operator"},          # allowed, then refused: it is running
    "reset a breaker": {"admin"},
}
ACTION_NAMES = {"start": "start", "approve": "approve", "pause": "pause", "retry": "retry", "reset": "reset_circuit"}


@dataclass
class Case:
    role: str
    action: str
    owner: str
    credential: str

    @property
    def allowed(self) -> bool:
        return self.role in ALLOWED[self.action]


Door = Callable[[Case, str], Awaitable[str | None]]     # -> the refusal's code, or None when not refused for access


async def tokens(engine: EngineClient) -> dict[str, tuple[str, str]]:
    """role -> (owner, credential), the revoked one revoked."""
    held = {}
    for role, (owner, grants) in ROLES.items():
        held[role] = (owner, (await person(engine, owner, *grants)).caller.credential)
    revoked_id = held["revoked operator"][1].split("_")[1]
    assert engine.caller.credential is not None
    await IdentityClient(engine.nc, engine.caller.credential).revoke(revoked_id, "left the team")
    return held


def start_command(action: str) -> StartRun:
    if "published" in action:
        return StartRun(playbook_id="deploy-web", environment="staging", dry_run=True)
    if action == "start billing-report in staging":
        return StartRun(playbook=BILLING, environment="staging", dry_run=True)
    return StartRun(playbook=DEPLOY_WEB, environment="production" if "production" in action else "staging",
                    dry_run=True, allow_unsafe_shell="unsafe" in action)


async def run_the_table(engine: EngineClient, settings: Settings, door: str, send: Door) -> None:
    settings.directory_path.write_text("users:\n  abby: [release]\n")
    assert isinstance(await CatalogClient(engine).publish(DEPLOY_WEB), Published)
    held = await tokens(engine)
    reply = await engine.send(StartRun(playbook=DEPLOY_WEB, environment="staging"))     # waits at its gate
    assert reply.accepted, reply.error
    async for _, event in engine.follow(reply.run_id):
        if type(event).__name__ == "ApprovalRequested":
            break
    run_id = reply.run_id
    wrong = []
    for action in ACTIONS:
        for role, (owner, credential) in held.items():
            case = Case(role, action, owner, credential)
            before = len(await refusals(engine.nc))
            code = await send(case, run_id)
            if (code is None) != case.allowed:
                wrong.append(f"{role} / {action} at {door}: {'refused ' + code if code else 'allowed'}")
                continue
            if code is None:
                continue
            recorded = [(r.principal, r.door, r.action) for r in (await refusals(engine.nc))[before:]]
            expected = (owner, door, ACTION_NAMES[action.split()[0]])    # a revoked token is still its owner's
            if door == "http" and role == "revoked operator" and len(recorded) == 1:
                expected = (*expected[:2], recorded[0][2])   # the web turned it away first: it names the request
                assert recorded[0][2].startswith("POST /api/")
            if recorded != [expected]:
                wrong.append(f"{role} / {action} at {door}: recorded {recorded}, not {expected}")
    assert not wrong, "\n".join(wrong)


def command_for(case: Case, run_id: str) -> StartRun | ApproveStep | PauseRun | RetryRun | ResetCircuit:
    verb = case.action.split()[0]
    if verb == "start":
        return start_command(case.action)
    if verb == "approve":
        return ApproveStep(run_id=run_id, step_id="ship")
    if verb == "pause":
        return PauseRun(run_id=run_id)
    if verb == "retry":
        return RetryRun(run_id=run_id)
    return ResetCircuit(key="payments:443")


async def test_the_nats_door(engine, settings) -> None:
    async def send(case: Case, run_id: str) -> str | None:
        reply = await EngineClient(engine.nc, case.credential).send(command_for(case, run_id))
        return reply.error.code if reply.error and reply.error.code in DENIED_CODES else None
    await run_the_table(engine, settings, "nats", send)


async def test_the_http_door(engine, settings, web_server) -> None:
    paths = {"start": "/api/runs", "approve": "/api/runs/{run}/steps/ship/approve", "pause": "/api/runs/{run}/pause",
             "retry": "/api/runs/{run}/retry", "reset": "/api/circuits/reset"}

    async with aiohttp.ClientSession() as http:
        async def send(case: Case, run_id: str) -> str | None:
            verb = case.action.split()[0]
            body: dict = {"key": "payments:443"} if verb == "reset" else {}
            if verb == "start":
                command = start_command(case.action)
                given = {"playbook_id": command.playbook_id} if command.playbook_id else {"playbook": command.playbook}
                body = {**given, "environment": command.environment, "dry_run": True,
                        "allow_unsafe_shell": command.allow_unsafe_shell}
            async with http.post(web_server.url + paths[verb].format(run=run_id), json=body,
                                 headers=caller_headers(case.credential)) as response:
                answer = await response.json()
            code = answer.get("error", {}).get("code") if response.status >= 400 else None
            return code if code in DENIED_CODES else None

        await run_the_table(engine, settings, "http", send)
        readers = {role for role in ROLES if role != "revoked operator"}
        for role, (_owner, credential) in (await tokens(engine)).items():        # reading a run is every role's
            async with http.get(f"{web_server.url}/api/runs", headers=caller_headers(credential)) as response:
                assert (response.status == 200) == (role in readers), role


async def test_the_cli_door(engine, settings) -> None:
    verbs = {"start": lambda case, run_id, book: ["run", "deploy-web" if "published" in case.action else str(book),
                                                   "--env", start_command(case.action).environment,
                                                   "--dry-run", *(["--allow-unsafe-shell"]
                                                                  if "unsafe" in case.action else [])],
             "approve": lambda case, run_id, book: ["approve", run_id, "ship"],
             "pause": lambda case, run_id, book: ["pause", run_id],
             "retry": lambda case, run_id, book: ["retry", run_id],
             "reset": lambda case, run_id, book: ["circuits", "--reset", "payments:443"]}
    books = Path(settings.home) / "books"
    books.mkdir(parents=True, exist_ok=True)
    (books / "deploy-web.yaml").write_text(DEPLOY_WEB)
    (books / "billing-report.yaml").write_text(BILLING)

    async def send(case: Case, run_id: str) -> str | None:
        book = books / ("billing-report.yaml" if "billing" in case.action else "deploy-web.yaml")
        argv = verbs[case.action.split()[0]](case, run_id, book)
        code = await playbook(argv, replace(settings, token=case.credential))
        return "refused" if code == EXIT_DENIED else None

    await run_the_table(engine, settings, "cli", send)


async def playbook(argv: list[str], settings: Settings) -> int:
    """`playbook ARGV` as the CLI runs it (its own event loop and NATS connection, in a thread), its exit code."""
    args: argparse.Namespace = parser().parse_args(argv)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        return await asyncio.to_thread(args.handler, args, settings)
