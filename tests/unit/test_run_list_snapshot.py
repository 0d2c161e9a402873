"""The run list's first message on the live stream: the newest runs, every active one, and where it left off."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from projections.run_list import RunSummary
from ui.web.streams import SNAPSHOT_RUNS, _snapshot

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def summaries(count: int, active_every: int = 0) -> dict[str, RunSummary]:
    return {f"r{n}": RunSummary(run_id=f"r{n}", playbook="p", actor="a", started_at=T0 + timedelta(seconds=n),
                                status="running" if active_every and n % active_every == 0 else "completed")
            for n in range(count)}


def test_a_snapshot_with_every_run_says_nothing_was_left_out() -> None:
    snapshot = _snapshot(summaries(3), position=7)
    assert snapshot["total"] == 3 and len(snapshot["runs"]) == 3 and snapshot["left_out_from"] is None


def test_a_snapshot_past_its_bound_says_from_when_runs_were_left_out() -> None:
    """So a page counts a change to a run it was not sent as that run, not as a new one."""
    runs = summaries(SNAPSHOT_RUNS + 100, active_every=50)
    snapshot = _snapshot(runs, position=7)
    newest_kept = T0 + timedelta(seconds=100)        # the SNAPSHOT_RUNS-th newest
    assert snapshot["left_out_from"] == newest_kept
    sent = {r["run_id"] for r in snapshot["runs"]}
    left_out = [r for r in runs.values() if r.run_id not in sent]
    assert left_out and all(r.started_at <= snapshot["left_out_from"] and not r.active for r in left_out)
    assert {"r0", "r50"} <= sent                     # active ones, however old
