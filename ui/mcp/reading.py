"""The tools that only read: a run's state, the active runs, a run's logs and figures, a playbook's findings."""
from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from projections.run_list import as_dict
from projections.run_view import run_view
from events import subjects
from events.output import OutputLine
from projections.step_logs import logs_of
from ui.mcp.access import Access, Refused, answered, playbook_of
from ui.mcp.figures import playbook_metrics, run_metrics
from ui.mcp.models import (
    ExecutionLogs, ExecutionMetrics, Executions, ExecutionStatus, ExecutionSummary, Gate, LogLine, PlaybookInsights,
    StepStatus, Validation, fields,
)
from ui.insights import LearningClient
from ui.mcp.playbooks import LocalFiles, playbook_text, validation

READS = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
MAX_LOG_CHARS = 256 * 1024      # what one answer carries at most; older lines are left out first
DEFAULT_TAIL = 200
# The most a call may ask for: said in each tool's input schema, and refused beyond (as the HTTP API's limits).
MAX_RUNS, MAX_TAIL, MAX_METRIC_RUNS = 1000, 10_000, 500


def register(server: MCPServer, access: Access, *, files: LocalFiles | None) -> None:
    @server.tool(annotations=READS)
    @answered(ToolError)
    async def get_execution_status(ctx: Context, run_id: str) -> ExecutionStatus:
        """A run's status, its steps (attempt, duration, error, gate, rollback, retry) and the gates waiting."""
        run = await access.readable_run(access.caller(ctx), run_id)
        view = run_view(run)
        gates = [Gate(step_id=s["id"], message=(s["approval_gate"] or {}).get("message", ""),
                      approvals=[a["actor"] for a in s["approvals"]])
                 for s in view["steps"] if s["gate"] == "requested"]
        return ExecutionStatus(**fields(view, ExecutionStatus) | {"waiting_gates": gates,
                               "steps": [StepStatus(**fields(s, StepStatus)) for s in view["steps"]]})

    @server.tool(annotations=READS)
    @answered(ToolError)
    async def list_active_executions(ctx: Context, include_finished: bool = False,
                                     limit: Annotated[int, Field(ge=1, le=MAX_RUNS)] = 100) -> Executions:
        """Runs that are running, paused or cancelling (with `include_finished`, every run), newest first."""
        caller = access.caller(ctx)
        principal = await access.principal(caller)
        runs = [r for r in await access.client.list_runs() if include_finished or r.active]
        readable = [r for r in runs if access.may_read(principal, r.playbook, r.environment)]
        readable.sort(key=lambda r: r.started_at, reverse=True)
        return Executions(runs=[ExecutionSummary(**fields(as_dict(r), ExecutionSummary))
                                for r in readable[:limit]])

    @server.tool(annotations=READS)
    @answered(ToolError)
    async def get_execution_logs(ctx: Context, run_id: str, step_id: str | None = None,
                                 attempt: Annotated[int | None, Field(ge=1)] = None,
                                 tail: Annotated[int, Field(ge=1, le=MAX_TAIL)] = DEFAULT_TAIL) -> ExecutionLogs:
        """What the run's steps printed (stdout, stderr, errors; rollbacks and remediations too), line by line,
        of one step and attempt if given; the last `tail` lines. Attempts still running come last (phase
        `running`, their sequence in the logs stream) with every line printed so far."""
        await access.readable_run(access.caller(ctx), run_id)
        if step_id is not None and not subjects.valid_step_id(step_id):
            raise Refused(f"step id {step_id[:80]!r} may hold only letters, digits, '-' and '_'", "bad_request")
        if attempt is not None and step_id is None:       # as `playbook logs --attempt`: an attempt is a step's
            raise Refused("an attempt needs its step_id", "bad_request")
        entries = logs_of(await access.client.events(run_id), step_id, attempt)
        lines = [LogLine(seq=e.seq, at=e.at.isoformat(), step_id=e.step_id, attempt=e.attempt, phase=e.phase,
                         stream=e.stream, line=line) for e in entries for line in e.text.splitlines()]
        recorded = {(e.step_id, e.attempt) for e in entries if e.phase == "step"}
        async for seq, item in access.client.logs(run_id, step_id, attempt):   # attempts still running
            if isinstance(item, OutputLine) and (item.step_id, item.attempt) not in recorded:
                lines.append(LogLine(seq=seq, at=item.at.isoformat(), step_id=item.step_id, attempt=item.attempt,
                                     phase="running", stream=item.stream, line=item.text))
        kept = lines[-tail:]
        while kept and sum(len(x.line) for x in kept) > MAX_LOG_CHARS:
            kept = kept[len(kept) // 8 + 1:]
        return ExecutionLogs(run_id=run_id, lines=kept, truncated=len(kept) < len(lines))

    @server.tool(annotations=READS)
    @answered(ToolError)
    async def get_playbook_insights(ctx: Context, playbook: str | None = None,
                                    environment: str | None = None) -> PlaybookInsights:
        """What past runs taught (durations, success, failures by category, retries that worked, targets failing
        in bursts or together) and what to change, each recommendation with its evidence; one playbook's if named,
        in one environment if named (each environment is learned apart)."""
        caller = access.caller(ctx)
        await access.principal(caller)        # a bad token is counted against its address here, as at every tool
        headers = access.client.headers(caller)
        insights = await LearningClient(access.client.nc, headers).insights(playbook, environment=environment, wait=0)
        return PlaybookInsights(**msgspec.to_builtins(insights))

    @server.tool(annotations=READS)
    @answered(ToolError)
    async def get_execution_metrics(ctx: Context, run_id: str | None = None, playbook: str | None = None,
                                    last_runs: Annotated[int, Field(ge=1, le=MAX_METRIC_RUNS)] = 50
                                    ) -> ExecutionMetrics:
        """Figures of one run (`run_id`), or of a playbook over its latest `last_runs` runs you may read:
        outcomes, success rate, mean duration, retries by category, and per step counts and times."""
        caller = access.caller(ctx)
        if (run_id is None) == (playbook is None):
            raise Refused("give exactly one of run_id and playbook", "bad_request")
        if run_id is not None:
            run = await access.readable_run(caller, run_id)
            return run_metrics(run_id, playbook_of(run), await access.client.events(run_id))
        assert playbook is not None
        principal = await access.principal(caller)
        runs = [r for r in await access.client.list_runs()
                if r.playbook == playbook and access.may_read(principal, r.playbook, r.environment)]
        recent = sorted(runs, key=lambda r: r.started_at)[-last_runs:]
        return playbook_metrics(playbook, [await access.client.events(r.run_id) for r in recent])

    @server.tool(annotations=READS)
    @answered(ToolError)
    async def validate_playbook_advanced(ctx: Context, playbook_yaml: str | None = None,
                                         playbook_file: str | None = None, parameters: dict[str, Any] | None = None,
                                         environment: str | None = None) -> Validation:
        """Check a playbook without running it: the findings `playbook validate` prints, with codes, lines and
        columns (PB1xx shape, PB2xx references, PB3xx parameters, PB4xx security)."""
        await access.principal(access.caller(ctx))
        text, source = playbook_text(playbook_yaml, playbook_file, files=files)
        # Off the loop: under `playbook up` every service shares it, and a large playbook takes seconds to check.
        return await asyncio.to_thread(validation, text, source, parameters, environment)

