"""The run service: answers commands on `pb.cmd.<Command>` and advances runs.

Commands arrive as NATS requests from the CLI, the HTTP API, MCP or any system with
`nats req`; each is answered accepted (with the events it produced) or rejected with a
reason. The advancer consumes the events that commands open their decisions with, as a
safety net: if a process died between appending one and what follows it (the first
steps, the gate's grant), the run still goes on.
"""
from __future__ import annotations


import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.codec import decode_command, encode, to_builtins
from events.commands import (
    ApproveStep, CancelRun, Command, PauseRun, RejectStep, Rejection, Reply, ResetCircuit, ResumeRun, RollbackRun,
    StartRun,
)
from events.circuit import CircuitReset
from events.run import RunEvent, RunStarted
from services.errors import CommandRejected, ConcurrencyConflict
from services.playbook import PlaybookInvalid, load_playbook
from services.directory import Directory
from services.domain.run.gates import Refused
from services.domain.run.commands import Advance, AnswerGate, RunCommand
from services.domain.run.decider import decide
from services.aggregates import BreakerRepository, RunRepository
from services.answering import Answering
from services.runtime import run_consumer
from services.settings import Settings

log = logging.getLogger(__name__)

COMMAND_QUEUE = "run-commands"
# Events written by commands and followed by more in the same decision: if the process
# died in between, the advancer finishes the decision.
COMMANDS_AT_ONCE = 64
_RUN_ID = re.compile(subjects.RUN_ID_PATTERN)
ADVANCE_AFTER = ("RunStarted", "RunResumed", "RunCancelRequested", "ApprovalGiven", "ApprovalGranted",
                 "RollbackStarted")


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


class RunService:
    def __init__(self, nc: NATS, runs: RunRepository, breakers: BreakerRepository, settings: Settings) -> None:
        self.nc, self.runs, self.breakers = nc, runs, breakers
        self.directory = Directory(settings.directory_path)
        self.engine_error_handlers = settings.error_handlers
        self.advancer = run_consumer(runs, settings, "advancer",
                                     [subjects.events_of_type(name) for name in ADVANCE_AFTER], self._advance)
        # One slow StartRun must not queue every other caller: commands are answered in tasks.
        self.requests = Answering(nc, subjects.command("*"), COMMAND_QUEUE, self._answer, at_once=COMMANDS_AT_ONCE)

    async def start(self) -> None:
        await self.requests.start()
        await self.advancer.start()

    async def stop(self, grace: float = 10.0) -> None:
        await self.requests.stop(grace)
        await self.advancer.stop(grace)

    async def _answer(self, msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        try:
            command = decode_command(name, msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            log.warning("bad command on %s: %s", msg.subject, err)
            reply = _rejected("bad_request", f"cannot read {name} command: {err}")
        else:
            reply = await self.handle(command)
        if msg.reply:
            await self.nc.publish(msg.reply, encode(reply))

    async def handle(self, command: Command) -> Reply:
        """Carry out one command; the only entry point for every interface."""
        try:
            run_id, events = await self._dispatch(command)
        except Refused as err:
            await self._record_refusal(err)
            return _rejected(err.code, str(err))
        except PlaybookInvalid as err:
            return _rejected("invalid_playbook", str(err), [to_builtins(d) for d in err.diagnostics])
        except CommandRejected as err:
            return _rejected(err.code, str(err))
        except Exception as err:  # a command never takes the service down
            log.exception("command %s failed", type(command).__name__)
            return _rejected("internal_error", f"the engine could not carry out the command: {err}")
        log.info("%s by %s on run %s: %s", type(command).__name__, command.actor, run_id,
                 ", ".join(type(e).__name__ for e in events) or "nothing to do")
        return Reply(accepted=True, run_id=run_id, events=[to_builtins(e) for e in events])

    async def _dispatch(self, command: Command) -> tuple[str | None, Sequence[msgspec.Struct]]:
        match command:
            case StartRun():
                return await self._start(command)
            case (PauseRun(run_id=run_id) | ResumeRun(run_id=run_id) | CancelRun(run_id=run_id)
                  | RollbackRun(run_id=run_id)):
                return run_id, await self._decide(run_id, command)
            case ResetCircuit(key=key, actor=actor):
                reset = CircuitReset(key=key, at=now(), actor=actor)
                await self.breakers.change(key, lambda _breaker: [reset])
                return None, [reset]
            case ApproveStep(run_id=run_id) | RejectStep(run_id=run_id):
                decision = AnswerGate(step_id=command.step_id, actor=command.actor,
                                      groups=tuple(self.directory.groups_of(command.actor)),
                                      approve=isinstance(command, ApproveStep), comment=command.comment)
                return run_id, await self._decide(run_id, decision)
        raise CommandRejected(f"unknown command {type(command).__name__}", "bad_request")

    async def _decide(self, run_id: str, command: RunCommand) -> list[RunEvent]:
        at = now()
        _, events = await self.runs.change(run_id, lambda run: decide(run, command, at))
        return events

    async def _record_refusal(self, refused: Refused) -> None:
        """Auditors ask about refused approvals too: the attempt goes into the run's stream."""
        record = refused.record
        try:
            await self.runs.change(record.run_id, lambda run: [record])
        except Exception:  # the refusal stands even if its record could not be written
            log.exception("could not record %s", record)

    async def _start(self, cmd: StartRun) -> tuple[str, list[RunEvent]]:
        loaded = await asyncio.to_thread(load_playbook, cmd.playbook, cmd.source, parameters=cmd.parameters,
                                         environment=cmd.environment, allow_unsafe_shell=cmd.allow_unsafe_shell)
        run_id = cmd.run_id or new_run_id()
        if not _valid_run_id(run_id):
            raise CommandRejected(f"run id {run_id!r} may hold only letters, digits, '-' and '_'", "bad_request")
        started = RunStarted(
            run_id=run_id, at=now(), actor=cmd.actor, playbook=loaded.playbook, plan=loaded.plan,
            parameters=loaded.parameters, environment=loaded.environment, source=cmd.source,
            dry_run=cmd.dry_run, allow_unsafe_shell=cmd.allow_unsafe_shell,
            engine_error_handlers=self.engine_error_handlers,
        )
        try:
            await self.runs.create(run_id, started)
        except ConcurrencyConflict:
            raise CommandRejected(f"a run with id {run_id!r} already exists", "run_exists") from None
        _, scheduled = await self.runs.change(run_id, lambda run: decide(run, Advance(), started.at))
        return run_id, [started, *scheduled]

    async def _advance(self, msg: Msg, event: RunEvent, seq: int) -> None:
        at = now()
        await self.runs.change(event.run_id, lambda run: decide(run, Advance(), at), min_version=seq)


def _valid_run_id(run_id: str) -> bool:
    """Run ids are NATS subject tokens and URL path parts: ASCII letters, digits, - and _."""
    return bool(_RUN_ID.fullmatch(run_id))


def _rejected(code: str, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    return Reply(accepted=False, error=Rejection(code=code, message=message, details=details or []))
