"""The tools that change runs: start one (and watch it), steer it, decide at its gates."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from events.commands import ApproveStep, CancelRun, Command, PauseRun, RejectStep, ResumeRun, RollbackRun
from events.identity import Caller
from events.run import ApprovalRequested, RunEvent, StepFailed, StepSkipped, StepSucceeded
from services.read import Run
from ui.cli.render import terminal_line
from ui.client import EngineClient
from ui.mcp.access import Access, answered
from ui.mcp.models import CommandResult, Execution, Gate
from ui.mcp.playbooks import LocalFiles, start_command

CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)
CONTROLS: dict[str, type[PauseRun | ResumeRun | CancelRun | RollbackRun]] = {
    "pause": PauseRun, "resume": ResumeRun, "cancel": CancelRun, "rollback": RollbackRun}
WAIT_LIMIT = 3600.0
MAX_EVENTS_TOLD = 200        # event names a watched start answers with, the latest


def register(server: MCPServer, access: Access, *, files: LocalFiles | None) -> None:
    @server.tool(annotations=CHANGES)
    @answered(ToolError)
    async def execute_playbook_advanced(
            ctx: Context, playbook_yaml: str | None = None, playbook_file: str | None = None,
            playbook: str | None = None, parameters: dict[str, Any] | None = None, environment: str | None = None,
            dry_run: bool = False, allow_unsafe_shell: bool = False, continue_on_failure: bool = False,
            approval_required: bool = False, run_id: str | None = None, wait: bool = False,
            wait_seconds: Annotated[float, Field(ge=0, le=WAIT_LIMIT)] = 600.0) -> Execution:
        """Start a run of a playbook: YAML text, a file (stdio only) or a catalog `name@version` (`playbook`).

        `continue_on_failure`: a failed step does not stop this run (the playbook's `on_failure` otherwise);
        the run still ends failed. `approval_required`: every step waits for an approval before it runs (its
        own gate, else one any approver but you may give). With `wait`, progress notifications follow the run
        until it ends or reaches an approval gate (at most `wait_seconds`); the result says where it stopped.
        """
        command = start_command(playbook_yaml, playbook_file, playbook, files=files,
                                parameters=parameters or {}, environment=environment, run_id=run_id, dry_run=dry_run,
                                allow_unsafe_shell=allow_unsafe_shell,
                                on_failure="continue" if continue_on_failure else None,
                                approval_required=approval_required)
        caller = access.caller(ctx)
        reply = await access.send(caller, command)
        assert reply.run_id is not None
        started = Execution(run_id=reply.run_id, status="running", events=[e["type"] for e in reply.events])
        if not wait or dry_run:
            run = await access.client.run(reply.run_id)
            return started.model_copy(update=_where(run))
        return await access.while_permitted(caller, _watch(access.client, ctx, reply.run_id, wait_seconds))

    @server.tool(annotations=CHANGES)
    @answered(ToolError)
    async def control_execution(ctx: Context, run_id: str, action: Literal["pause", "resume", "cancel", "rollback"],
                                reason: str = "") -> CommandResult:
        """Pause, resume, cancel or roll back a run, with a reason that is recorded."""
        extra = {"reason": reason} if action != "resume" and reason else {}
        return await _command(access, access.caller(ctx), CONTROLS[action](run_id=run_id, **extra), run_id)

    @server.tool(annotations=CHANGES)
    @answered(ToolError)
    async def approve_execution_step(ctx: Context, run_id: str, step_id: str,
                                     decision: Literal["approve", "reject"] = "approve",
                                     comment: str = "") -> CommandResult:
        """Approve or reject a step waiting at its approval gate (a rejected step fails). Only a person's token
        approves: with an agent's, ask a person (the gate's approvers) and watch for ApprovalGranted."""
        kind = ApproveStep if decision == "approve" else RejectStep
        return await _command(access, access.caller(ctx), kind(run_id=run_id, step_id=step_id,
                                                                      comment=comment), run_id)


async def _command(access: Access, caller: Caller, command: Command, run_id: str) -> CommandResult:
    reply = await access.send(caller, command)
    return CommandResult(run_id=reply.run_id or run_id, accepted=True, events=[e["type"] for e in reply.events])


async def _watch(client: EngineClient, ctx: Context, run_id: str, seconds: float) -> Execution:
    """Progress notifications for each event, until the run ends, a gate asks, or time is up.

    The run is read whole before and after (the client resolves what the events only point to); in between, the
    progress is steps finished of the run's steps."""
    total, finished, seen = len((await client.run(run_id)).steps) or None, set[str](), list[str]()
    try:
        following = cast(AsyncGenerator[tuple[int, RunEvent], None], client.follow(run_id))
        async with asyncio.timeout(seconds), contextlib.aclosing(following) as events:
            async for _, event in events:
                seen.append(type(event).__name__)
                if isinstance(event, (StepSucceeded, StepFailed, StepSkipped)):
                    finished.add(event.step_id)
                await ctx.report_progress(len(finished), total, terminal_line(event))
                if isinstance(event, ApprovalRequested):
                    break
    except TimeoutError:
        pass
    return Execution(run_id=run_id, events=seen[-MAX_EVENTS_TOLD:], **_where(await client.run(run_id)))


def _where(run: Run) -> dict[str, Any]:
    gates = [Gate(step_id=s.id, message=s.gate.message, approvals=[a.actor for a in s.gate.approvals],
                  deadline=s.gate.deadline.isoformat() if s.gate.deadline else None)
             for s in run.steps.values() if s.gate.status == "requested"]
    return {"status": run.display_status, "finished": run.finished_at is not None, "waiting_gates": gates,
            "failure": run.failure or None,
            "rollback_failure": (run.rollback.failure or None) if run.rollback else None}
