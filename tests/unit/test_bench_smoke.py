"""The benchmarks still run: `python -m bench steps` at a tiny size, as a user would start it.

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
