"""The run service: answers commands on `pb.cmd.<Command>` and advances runs.

Commands arrive as NATS requests from the CLI, the HTTP API, MCP or any system with
`nats req`; each is answered accepted (with the events it produced) or rejected with a
reason. Every command carries its caller's credential in its headers: the guard verifies
it, the command's target is looked up (the playbook a start names, the run a control
acts on, the gate an approval answers), and the guard decides; a refusal is answered
and recorded. The actor on every event is the verified principal. The advancer consumes
the events that commands open their decisions with, as a safety net: if a process died
between appending one and what follows it (the first steps, the gate's grant), the run
still goes on. The safety net (`abandoned`) consumes what any service gave up on (`MessageAbandoned`) and
makes sure the run does not wait for it for ever (services/domain/run/abandoned.py).
"""
from __future__ import annotations


import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.codec import decode_command, encode, to_builtins
from events.catalog import PlaybookPin
from events.commands import (
    ApproveStep, CancelRun, Command, PauseRun, PublishPlaybook, RejectStep, Rejection, Reply, ResetCircuit, ResumeRun,
    RetryRun,
    RollbackRun, StartRun,
)
from events.identity import Caller
from events.run import MessageAbandoned, RunEvent, RunRetried, RunStarted
from services.catalog import Catalog
from services.domain.catalog import is_digest
from services.errors import CommandRejected, ConcurrencyConflict, EngineUnavailable, UnknownRun
from services.playbook import Diagnostic, LoadedPlaybook, PlaybookInvalid, load_playbook
from services.playbook_pins import digest_of
from services.domain import breaker as breaker_rules
from services.domain.run.gates import Refused
from services.domain.run.abandoned import react, reason_of
from services.domain.run.commands import Advance, AnswerGate, Retry, RunCommand
from services.domain.run.decider import decide
from services.domain.run.state import Run
from services.aggregates import BreakerRepository, RunRepository
from services.answering import Answering
from services.identity.authority import COMMAND_ACTIONS, Resource
from services.log_text import kinds_said
from services.identity.guard import Guard
from services.identity.names import InvalidName, normalise_name
from services.identity.principal import Acting
from services.run.unacknowledged import Unacknowledged
from services.runtime import run_consumer
from services.settings import Settings

log = logging.getLogger(__name__)

COMMAND_QUEUE = "run-commands"
SAFETY_NET = "abandoned"      # the consumer of what services gave up on
COMMANDS_AT_ONCE = 64
# Events written by commands (and the resilience service's verdict not to retry) and followed by more in the
# same decision: if the process died in between, the advancer finishes the decision.
ADVANCE_AFTER = ("RunStarted", "RunResumed", "RunCancelRequested", "ApprovalGiven", "ApprovalGranted",
                 "ApprovalRejected", "ApprovalTimedOut", "StepNotRetried", "RollbackStarted", "RunRetried")
# What executors under their own login (pb-executor) record without advancing: their login may write nothing else,
# so the advancer schedules what they make ready and ends the run. An executor in the run service's process
# advances in its own decision, and the advancer need not follow these.
STEP_OUTCOMES = ("StepSucceeded", "StepFailed", "StepRolledBack", "StepRollbackFailed")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(slots=True)
class Besides:
    """What an answer says beside the events recorded: a started playbook's warnings, and what a command that
    had nothing to do found there already (a publish of a published text: that version)."""

    warnings: list[Diagnostic] = field(default_factory=list)
    found: list[msgspec.Struct] = field(default_factory=list)


class RunService:
    def __init__(self, nc: NATS, runs: RunRepository, breakers: BreakerRepository, catalog: Catalog,
                 settings: Settings, guard: Guard, *, advances_steps: bool = False) -> None:
        self.nc, self.runs, self.breakers, self.catalog, self.guard = nc, runs, breakers, catalog, guard
        self.playbooks = catalog.playbooks
        self.library = settings.library_folders
        self.engine_error_handlers = settings.error_handlers
        after = ADVANCE_AFTER + (STEP_OUTCOMES if advances_steps else ())
        self.advancer = run_consumer(runs, settings, "advancer", [subjects.events_of_type(name) for name in after],
                                     self._advance)
        self.net = run_consumer(runs, settings, SAFETY_NET, [subjects.events_of_type("MessageAbandoned")],
                                self._react)
        self.unacknowledged = Unacknowledged(nc, runs)     # what the server gave up on: recorded for the net
        # One slow StartRun must not queue every other caller: commands are answered in tasks.
        self.requests = Answering(nc, subjects.command("*"), COMMAND_QUEUE, self._answer, at_once=COMMANDS_AT_ONCE)

    async def start(self) -> None:
        """The library folders go into the catalog first (what is there already is skipped), so a run of an
        example starts by name as soon as commands are answered."""
        for published in await self.catalog.publish_library(self.library, now()):
            log.info("library: published %s@%s (%s)", published.name, published.version, published.source)
        await self.requests.start()
        await self.advancer.start()
        await self.net.start()
        await self.unacknowledged.start()

    async def stop(self, grace: float = 10.0) -> None:
        await self.requests.stop(grace)
        await self.advancer.stop(grace)
        await self.net.stop(grace)
        await self.unacknowledged.stop()

    async def _answer(self, msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        try:
            command = decode_command(name, msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            log.warning("bad command on %s: %s", msg.subject, err)
            reply = _rejected("bad_request", f"cannot read {name} command: {err}")
        else:
            reply = await self.handle(command, Caller.of(msg.headers))
        if msg.reply:
            await self.nc.publish(msg.reply, _fitted(reply, self.nc.max_payload))

    async def handle(self, command: Command, caller: Caller) -> Reply:
        """Carry out one command for its caller; the only entry point for every interface."""
        name = type(command).__name__
        try:
            acting = await self.guard.authenticate(caller.credential, door=caller.door, action=COMMAND_ACTIONS[name],
                                                   target=_target(command), on_behalf_of=caller.on_behalf_of)
            await self._refuse_forgery(command, acting, caller)
            command = msgspec.structs.replace(command, actor=acting.actor, on_behalf_of=acting.on_behalf_of)
            besides = Besides()
            run_id, events = await self._dispatch(command, acting, caller, besides)
        except Refused as err:
            await self._record_refusal(err)
            return _rejected(err.code, str(err))
        except PlaybookInvalid as err:
            return _rejected("invalid_playbook", str(err), [to_builtins(d) for d in err.diagnostics])
        except EngineUnavailable as err:
            return _rejected(err.code, str(err))
        except CommandRejected as err:      # AccessDenied among them: recorded by the guard already
            return _rejected(err.code, str(err))
        except Exception as err:  # a command never takes the service down
            log.exception("command %s failed", name)
            return _rejected("internal_error", f"the engine could not carry out the command: {err}")
        log.info("%s by %s on run %s: %s", name, acting.actor, run_id,
                 kinds_said(type(e).__name__ for e in events) or "nothing to do")
        return Reply(accepted=True, run_id=run_id, events=[to_builtins(e) for e in events],
                     warnings=[to_builtins(w) for w in besides.warnings], found=[to_builtins(f) for f in besides.found])

    async def _refuse_forgery(self, command: Command, acting: Acting, caller: Caller) -> None:
        """A command that names someone other than its caller is refused and recorded: the name is never used."""
        claims: dict[str, tuple[str | None, set[str | None]]] = {
            "actor": (command.actor, {acting.actor, acting.effective}),
            "on_behalf_of": (command.on_behalf_of, {acting.on_behalf_of})}
        for named, (claimed, allowed) in claims.items():
            canonical = _canonical(claimed) if claimed is not None else None
            if claimed is not None and (canonical is None or canonical not in allowed):
                verified = acting.actor + (f" on behalf of {acting.on_behalf_of}" if acting.on_behalf_of else "")
                raise await self.guard.forbid(
                    acting, f"the command names {named} {claimed[:80]!r}, but its credential is {verified}'s: "
                            "who acts is always the caller (an admin acts for someone with Playbook-On-Behalf-Of)",
                    door=caller.door, action=COMMAND_ACTIONS[type(command).__name__], target=_target(command),
                    code="forged_actor")

    async def _permit(self, acting: Acting, command: Command, resource: Resource, caller: Caller) -> None:
        await self.guard.permit(acting, COMMAND_ACTIONS[type(command).__name__], resource, door=caller.door)

    async def _dispatch(self, command: Command, acting: Acting, caller: Caller,
                        besides: Besides) -> tuple[str | None, Sequence[msgspec.Struct]]:
        """Carry the command out: the run it concerns and the events it recorded, with `besides` what else the
        answer says."""
        named = getattr(command, "run_id", None)
        if named is not None and not subjects.valid_run_id(named):   # decoded commands are checked already
            raise CommandRejected(f"run id {named!r} may hold only letters, digits, '-' and '_'", "bad_request")
        match command:
            case StartRun():
                return await self._start(command, acting, caller, besides.warnings)
            case (PauseRun(run_id=run_id) | ResumeRun(run_id=run_id) | CancelRun(run_id=run_id)
                  | RollbackRun(run_id=run_id)):
                await self._permit(acting, command, _of_run(await self._existing(run_id)), caller)
                return run_id, await self._decide(run_id, command)
            case PublishPlaybook():
                await self._permit(acting, command, Resource(), caller)
                text = command.text or (await self.playbooks.take_upload(command.upload) if command.upload else "")
                if not text:
                    raise CommandRejected("give the playbook's YAML as text, or an upload", "bad_request")
                version, new = await self.catalog.publish(text, actor=acting.actor, on_behalf_of=acting.on_behalf_of,
                                                          at=now(), version=command.version, source=command.source)
                if new:
                    return None, [version]
                besides.found.append(version)
                return None, []
            case RetryRun(run_id=run_id):
                return run_id, await self._retry(command, acting, caller)
            case ResetCircuit(key=key):
                await self._permit(acting, command, Resource(), caller)
                at = now()
                _, reset = await self.breakers.change(
                    key, lambda breaker: breaker_rules.reset(breaker, acting.actor, acting.on_behalf_of, at))
                return None, reset
            case ApproveStep(run_id=run_id) | RejectStep(run_id=run_id):
                run = await self._existing(run_id)
                await self._permit(acting, command, _of_run(run, command.step_id), caller)
                decision = AnswerGate(step_id=command.step_id, actor=acting.actor, on_behalf_of=acting.on_behalf_of,
                                      groups=tuple(self.guard.groups_of(acting.effective)),
                                      approve=isinstance(command, ApproveStep), comment=command.comment)
                return run_id, await self._decide(run_id, decision)
        raise CommandRejected(f"unknown command {type(command).__name__}", "bad_request")

    async def _existing(self, run_id: str) -> Run:
        run = await self.runs.get(run_id)
        if not run.exists:
            raise UnknownRun(run_id)
        return run

    async def _decide(self, run_id: str, command: RunCommand) -> list[RunEvent]:
        at = now()
        _, events = await self.runs.change(run_id, lambda run: decide(run, command, at))
        return events

    async def _retry(self, cmd: RetryRun, acting: Acting, caller: Caller) -> list[RunEvent]:
        """Authorised like a start, on the run's playbook; a replacement is validated as a start would be (in a
        worker thread); then the decider decides."""
        run = await self._existing(cmd.run_id)
        started = run.started
        assert started is not None
        if cmd.playbook is not None and cmd.playbook_id:
            raise CommandRejected("give at most one of playbook (YAML text) and playbook_id", "bad_request")
        text, source, version = cmd.playbook, cmd.source, None
        if cmd.playbook_id:
            text, source, version = await self._text_by_id(cmd.playbook_id)
        await self._permit(acting, cmd, replace(_of_run(run), unsafe_shell=started.allow_unsafe_shell,
                                                text_sent=text is not None and version is None), caller)
        replacement, pin = None, None
        if text is not None:
            replacement = await asyncio.to_thread(load_playbook, text, source, environment=started.environment,
                                                  allow_unsafe_shell=started.allow_unsafe_shell)
            pin = await self._pin(text, replacement, version)
        # A catalog version is recorded by name@version, as a start by name is.
        asked = msgspec.structs.replace(cmd, source=source) if version is not None else cmd
        events = await self._decide(cmd.run_id, Retry(asked, replacement, pin))
        return [e.as_stored() if isinstance(e, RunRetried) else e for e in events]     # as a start's: no playbook

    async def _record_refusal(self, refused: Refused) -> None:
        """Auditors ask about refused approvals too: the attempt goes into the run's stream."""
        record = refused.record
        try:
            await self.runs.change(record.run_id, lambda run: [record])
        except Exception:  # the refusal stands even if its record could not be written
            log.exception("could not record %s", record)

    async def _start(self, cmd: StartRun, acting: Acting, caller: Caller,
                     warnings: list[Diagnostic]) -> tuple[str, list[RunEvent]]:
        run_id = cmd.run_id or new_run_id()
        text, source, version = await self._text_of(cmd)
        loaded: LoadedPlaybook = await asyncio.to_thread(
            load_playbook, text, source, parameters=cmd.parameters, environment=cmd.environment,
            allow_unsafe_shell=cmd.allow_unsafe_shell)
        warnings.extend(w for w in loaded.warnings if w.severity in ("warning", "error"))
        await self._permit(acting, cmd, Resource(playbook=loaded.playbook.name, environment=loaded.environment,
                                                 unsafe_shell=cmd.allow_unsafe_shell, text_sent=version is None),
                           caller)
        pin = await self._pin(text, loaded, version)
        started = RunStarted(
            run_id=run_id, at=now(), actor=acting.actor, on_behalf_of=acting.on_behalf_of, playbook=loaded.playbook,
            plan=loaded.plan, pin=pin, parameters=loaded.parameters, environment=loaded.environment,
            variables=loaded.variables, source=source,
            dry_run=cmd.dry_run, allow_unsafe_shell=cmd.allow_unsafe_shell,
            engine_error_handlers=self.engine_error_handlers, on_failure=cmd.on_failure,
            approval_required=cmd.approval_required,
        )
        try:
            await self.runs.create(run_id, started)
        except ConcurrencyConflict:
            raise CommandRejected(f"a run with id {run_id!r} already exists", "run_exists") from None
        _, scheduled = await self.runs.change(run_id, lambda run: decide(run, Advance(), started.at))
        return run_id, [started.as_stored(), *scheduled]

    async def _text_of(self, cmd: StartRun) -> tuple[str, str, str | None]:
        """The playbook's text, where it came from, and its catalog version (None: not started from the catalog)."""
        if sum(map(bool, (cmd.playbook, cmd.upload, cmd.playbook_id))) != 1:
            raise CommandRejected("give exactly one of playbook (YAML text), upload and playbook_id", "bad_request")
        if cmd.playbook:
            return cmd.playbook, cmd.source, None
        if cmd.upload:
            return await self.playbooks.take_upload(cmd.upload), cmd.source, None
        return await self._text_by_id(cmd.playbook_id)

    async def _text_by_id(self, playbook_id: str) -> tuple[str, str, str | None]:
        """A catalog `name[@version]`'s text, or a stored text's by its digest (no version: not the catalog's)."""
        if is_digest(playbook_id):
            return await self.playbooks.text(playbook_id), playbook_id, None
        found = await self.catalog.find(playbook_id)
        return await self.playbooks.text(found.digest), f"{found.name}@{found.version}", found.version

    async def _pin(self, text: str, loaded: LoadedPlaybook, version: str | None) -> PlaybookPin:
        """Store the text and the parsed playbook by digest (once each) and say where they are."""
        digest = digest_of(text.encode()) if version is not None else await self.playbooks.store_text(text)
        parsed = await self.playbooks.store_parsed(loaded.playbook, loaded.plan)
        return PlaybookPin(name=loaded.playbook.name, version=version or str(loaded.playbook.version), digest=digest,
                           parsed=parsed, steps=len(loaded.playbook.steps), published=version is not None)

    async def _advance(self, msg: Msg, event: RunEvent, seq: int) -> None:
        at = now()
        await self.runs.change(event.run_id, lambda run: decide(run, Advance(), at), min_version=seq)

    async def _react(self, msg: Msg, event: RunEvent, seq: int) -> None:
        if isinstance(event, MessageAbandoned):
            at = now()
            _, events = await self.runs.change(event.run_id, lambda run: react(run, event, at), min_version=seq)
            if events:
                log.warning("run %s: %s; %s", event.run_id, reason_of(event),
                            kinds_said(type(e).__name__ for e in events))


def _of_run(run: Run, step_id: str | None = None) -> Resource:
    """What a control or a gate decision acts on: the run's playbook and environment, and the gate's approvers."""
    assert run.started is not None
    gate = run.gate_of(step_id) if step_id and step_id in run.specs else None
    return Resource(playbook=run.started.playbook_name, environment=run.started.environment, run_id=run.id,
                    approvers=tuple(gate.required_approvers) if gate else ())


def _target(command: Command) -> str:
    """The command's target as a refusal before any lookup records it."""
    run_id = getattr(command, "run_id", None)
    return f"run {run_id}" if run_id else ""


def _canonical(name: str) -> str | None:
    try:
        return normalise_name(name)
    except InvalidName:
        return None


def _fitted(reply: Reply, max_payload: int) -> bytes:
    """The reply encoded within one NATS message: the events or a rejection's details cut to what fits
    (the stream has every event; a rejection's details end with a note of how many were left out)."""
    data = encode(reply)
    if len(data) <= max_payload:
        return data
    if reply.error is None:
        events = reply.events
        while events and len(data) > max_payload:
            events = events[:len(events) // 2]
            data = encode(Reply(accepted=True, run_id=reply.run_id, events=events))
        return data
    details = reply.error.details
    while details and len(data) > max_payload:
        details = details[:len(details) // 2]
        note = {"message": f"{len(reply.error.details) - len(details)} more not shown: the reply must fit in one "
                           f"NATS message ({max_payload} bytes)"}
        data = encode(_rejected(reply.error.code, reply.error.message[:max_payload // 2], [*details, note]))
    return data if len(data) <= max_payload else encode(_rejected(reply.error.code, reply.error.message[:1000]))


def _rejected(code: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    return Reply(accepted=False, error=Rejection(code=code, message=message, details=details or []))
