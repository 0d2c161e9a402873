"""The benchmarks still run: `python -m bench steps` and `waiting` at a tiny size, as a user would start it.

No timing is asserted here; speed is what the benchmark prints, against its floor.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_steps_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    target = tmp_path / "steps.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "steps", "--steps", "3", "--repetitions", "1", "--json", str(target)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ratios: noop" in done.stdout

    result = json.loads(target.read_text())
    assert result["benchmark"] == "steps" and result["steps"] == 3
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert {"append_ms", "subprocess_ms"} <= result["floors"].keys()
    for kind in ("noop", "shell"):
        workload = result["workloads"][kind]
        assert {"per_step_ms", "floor_ms", "ratio", "events_per_step"} <= workload.keys()
        assert workload["events_per_step"] >= 3   # scheduled, started, succeeded per step
    assert result["ratios"].keys() == {"noop", "shell"}


def test_the_waiting_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    target = tmp_path / "waiting.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "waiting", "--runs", "5", "--json", str(target)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ratios: " in done.stdout and "bytes per waiting run" in done.stdout

    result = json.loads(target.read_text())
    assert result["benchmark"] == "waiting" and result["runs"] == 5
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    for process in ("services", "nats_server"):
        assert {"rss_before_bytes", "rss_after_bytes", "growth_bytes", "bytes_per_waiting_run"} <= result[process].keys()
    assert result["waiting_in_list_runs"] == 5 + result["warmup_runs"]
    assert result["ratios"].keys() == {"bytes_per_waiting_run"}
