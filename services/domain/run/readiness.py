"""Which steps may start next, and what is still going on: indexes the fold keeps, so a decision looks
at what changed, not at every step.

A step is settled when it finished in a way that lets its dependents go on. Per step the fold
counts its needs not settled yet (`Run.waiting`); the pending steps with none are `Run.ready`;
`Run.unsettled`, `Run.running` and `Run.retrying` count the steps not settled, running, and
waiting on a retry. A change in one step touches only the steps that need it, so a run of
10,000 steps decides about as fast as one of ten.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.domain.run.state import Run, StepState


def settled(run: Run, step: StepState) -> bool:
    """Finished in a way that lets its dependents go on."""
    return step.status in ("succeeded", "skipped") or (
        step.status == "failed" and not step.retry.status and tolerated_or_continue(run, step.id))


def tolerated(run: Run, step_id: str) -> bool:
    return run.specs[step_id].continue_on_failure


def tolerated_or_continue(run: Run, step_id: str) -> bool:
    return tolerated(run, step_id) or run.on_failure == "continue"


Mark = tuple[bool, bool, bool]     # settled, running, waiting on a retry


def mark(run: Run, step: StepState) -> Mark:
    """What the indexes know of a step: taken before it changes, handed to `changed` after."""
    return settled(run, step), step.status == "running", bool(step.retry.status)


def begin(run: Run, needs: Mapping[str, Sequence[str]]) -> None:
    """Every step pending and unsettled; those that need nothing are ready."""
    dependents: dict[str, list[str]] = {}
    for step_id, its_needs in needs.items():
        for need in its_needs:
            dependents.setdefault(need, []).append(step_id)
    run.dependents = dependents
    run.waiting = {step_id: len(needs.get(step_id, ())) for step_id in run.steps}
    run.ready = {step_id for step_id, count in run.waiting.items() if not count}
    run.unsettled = len(run.steps)


def recount(run: Run, needs: Mapping[str, Sequence[str]]) -> None:
    """Every index counted again from the steps, after many changed at once (a retry of the run)."""
    begin(run, needs)
    steps = run.steps
    unsettled = {step_id for step_id, step in steps.items() if not settled(run, step)}
    run.waiting = {step_id: sum(need in unsettled for need in needs.get(step_id, ())) for step_id in steps}
    run.ready = {step_id for step_id, step in steps.items() if step.status == "pending" and not run.waiting[step_id]}
    run.unsettled = len(unsettled)
    run.running = sum(step.status == "running" for step in steps.values())
    run.retrying = sum(bool(step.retry.status) for step in steps.values())


def pend(run: Run, step: StepState) -> None:
    """The step is pending again (its attempt was interrupted)."""
    if not run.waiting[step.id]:
        run.ready.add(step.id)


def unpend(run: Run, step_id: str) -> None:
    run.ready.discard(step_id)


def changed(run: Run, step: StepState, was: Mark) -> None:
    """After `step` changed: the counts follow, and if it settled (or stopped being), so learn the steps
    that need it."""
    now, running, retrying = mark(run, step)
    run.running += running - was[1]
    run.retrying += retrying - was[2]
    if now == was[0]:
        return
    run.unsettled += -1 if now else 1
    waiting, ready, steps, undo = run.waiting, run.ready, run.steps, run.undo
    dependents = run.dependents.get(step.id, ())
    if undo is not None and waiting is undo.waiting:   # folding ahead: keep the counts to put back
        for dependent in dependents:
            undo.old_waiting.setdefault(dependent, waiting[dependent])
    if now:                      # its dependents have one need fewer to wait for
        for dependent in dependents:
            count = waiting[dependent] = waiting[dependent] - 1
            if not count and steps[dependent].status == "pending":
                ready.add(dependent)
    else:                        # settled no more (a retry): its dependents wait for it again
        for dependent in dependents:
            count = waiting[dependent] = waiting[dependent] + 1
            if count == 1:
                ready.discard(dependent)
