"""The benchmarks still run: each `python -m bench <name>` at a tiny size, as a user would start it.

No timing is asserted here; speed is what the benchmark prints, against its floor.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, *args: str, target: Path, timeout: float = 120) -> tuple[str, dict]:
    """`python -m bench <name> ... --json target` as a user starts it; its output and its result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "bench", name, *args, "--json", str(target)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(target.read_text())


def test_the_steps_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("steps", "--steps", "3", "--repetitions", "1", target=tmp_path / "steps.json")
    assert "ratios: noop" in out
    assert result["benchmark"] == "steps" and result["steps"] == 3
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert {"append_ms", "subprocess_ms"} <= result["floors"].keys()
    for kind in ("noop", "shell"):
        workload = result["workloads"][kind]
        assert {"per_step_ms", "floor_ms", "ratio", "events_per_step"} <= workload.keys()
        assert workload["events_per_step"] >= 3   # scheduled, started, succeeded per step
    assert result["ratios"].keys() == {"noop", "shell"}


def test_the_waiting_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("waiting", "--runs", "5", target=tmp_path / "waiting.json")
    assert "ratios: " in out and "bytes per waiting run" in out
    assert result["benchmark"] == "waiting" and result["runs"] == 5
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    for process in ("services", "nats_server"):
        assert {"rss_before_bytes", "rss_after_bytes", "growth_bytes",
                "bytes_per_waiting_run"} <= result[process].keys()
    assert result["waiting_in_list_runs"] == 5 + result["warmup_runs"]
    assert result["ratios"].keys() == {"bytes_per_waiting_run"}


def test_the_sse_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("sse", "--runs", "3", "--clients", "2", "--seconds", "0.5", "--warmup", "0.2",
                                "--probe-rate", "20", target=tmp_path / "sse.json")
    assert "ratios: run list p99" in out
    assert result["benchmark"] == "sse" and (result["runs"], result["clients"]) == (3, 2)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert result["probe_events"] > 0 and result["missing"] == 0 and result["errors"] == []
    streams = result["streams"]
    assert streams.keys() == {"run_list", "one_run", "raw_nats", "engine_run"}
    assert streams["run_list"]["from_ack"]["count"] == 2 * result["probe_events"]   # every client got every one
    assert streams["raw_nats"]["from_ack"]["count"] == result["probe_events"]
    for stats in (streams["run_list"]["from_ack"], streams["one_run"]["from_ack"], streams["raw_nats"]["from_send"]):
        assert {"p50_ms", "p99_ms", "max_ms"} <= stats.keys() and stats["p50_ms"] <= stats["p99_ms"]
    assert {"run_list_p99_vs_target", "one_run_p99_vs_target", "run_list_p99_vs_raw_nats"} <= result["ratios"].keys()


def test_the_replay_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("replay", "--events", "1000",
                                "--steps", "3", "--profile", target=tmp_path / "replay.json")
    assert "ratios: rebuild" in out
    assert result["benchmark"] == "replay" and result["events"] == 1000
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert result["recorded"]["events"] == 1000 and result["views"]["applied"] == 1000
    assert result["rebuild_report"]["events"] == 1000 and result["views"]["runs"] > 0
    assert {"raw", "transport", "decode", "rebuild"} <= result["events_per_s"].keys()
    assert result["ratios"]["rebuild_vs_raw"] > 0
    assert result["profile"]["top_tottime"] and (tmp_path / "replay.prof").exists()


def test_the_concurrency_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("concurrency", "--runs", "5", "--steps", "2", target=tmp_path / "concurrency.json")
    assert "ratios: events/s" in out
    assert result["benchmark"] == "concurrency" and (result["runs"], result["steps"]) == (5, 2)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    for phase in ("flowing", "held"):
        assert result[phase]["completed"] == 5 and 1 <= result[phase]["peak_active_runs"] <= 5
        assert result[phase]["rss_peak_bytes"] > 0
    assert result["held"]["peak_active_runs"] == 5   # the held runs were all active at once
    assert result["events_per_step"] >= 3 and result["floor"]["events"] == result["flowing"]["events"]
    assert result["services_peak_rss_bytes"] > 0
    assert result["ratios"].keys() == {"events_per_second_vs_floor", "wall_vs_floor", "peak_rss_vs_target"}


def test_the_parallel_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("parallel", "--steps", "3", "--seconds", "0.1", "--repetitions", "1",
                                target=tmp_path / "parallel.json")
    assert "ratios: wall" in out
    assert result["benchmark"] == "parallel" and (result["steps"], result["seconds"]) == (3, 0.1)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert result["median_wall_s"] >= 0.1 and result["median_floor_s"] >= 0.1
    assert result["spread_of_median_run"]["events"] >= 3 * 3
    assert result["ratios"].keys() == {"wall_vs_one_wait"}


def test_the_recovery_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("recovery", "--runs", "4", "--steps", "3", "--step-seconds", "0.2", "--lease", "1",
                                target=tmp_path / "recovery.json")
    assert "ratios: recovery" in out
    assert result["benchmark"] == "recovery" and (result["runs"], result["steps"]) == (4, 3)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert (result["lease_seconds"], result["ack_wait_seconds"]) == (1, 30)
    assert result["runs_completed"] + result["runs_lost"] == 4
    assert result["attempts_started"] >= 4 * 3 and result["interrupted_attempts"] >= 0
    assert result["recovery_seconds"] > 0 and result["floor_seconds"] >= 0
    assert result["side_effects"]["lines"] >= 2 * 4 * 3
    assert result["ratios"].keys() == {"recovery_vs_floor", "runs_lost", "attempts_started_twice",
                                       "side_effects_twice", "overlapping_attempts",
                                       "victim_effects_after_kill"}


def test_the_vs_ansible_benchmark_runs_our_side_without_installing_ansible(tmp_path: Path) -> None:
    out, result = run_benchmark("vs-ansible", "--steps", "3", "--repetitions", "1", "--skip-ansible",
                                target=tmp_path / "vs-ansible.json")
    assert "ratios: ansible skipped" in out
    assert result["benchmark"] == "vs-ansible" and result["steps"] == 3 and result["ansible_skipped"]
    assert result["ansible_s"] == [] and result["machine"]["ansible"] is None
    ours = result["ours"]
    assert 0 < ours["up_ready_s"] < ours["whole_process_s"] and ours["warm_s"] > 0 and ours["warm_cli_s"] > 0
    assert result["ratios"] == {"whole_process": None, "warm": None, "warm_cli": None}


def test_the_shell_analysis_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("shell-analysis", "--steps", "40", "--repetitions", "1", target=tmp_path / "shell.json")
    assert "ratios: harmless" in out
    assert result["benchmark"] == "shell-analysis" and result["steps"] == 40
    for kind in ("harmless", "destructive", "mixed"):
        assert {"floor_us", "full_us", "screened_us", "playbook_us_per_step", "ratio", "linearity"} <= (
            result["workloads"][kind].keys())


def test_the_identity_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("identity", "--tokens", "5", "--calls", "200", "--requests", "20", "--repetitions", "1",
                                target=tmp_path / "identity.json")
    assert "ratios: admit p50" in out
    assert result["benchmark"] == "identity" and (result["tokens"], result["calls"]) == (5, 200)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert result["p50_ms"].keys() == {"floor", "verify", "admit", "plain", "verified"}
    assert all(r["count"] == 200 for r in result["rounds"]["admit"]) and result["rounds"]["plain"][0]["count"] == 20
    assert 0 < result["p50_ms"]["floor"] <= result["p50_ms"]["verify"] <= result["p99_ms"]["verify"]
    assert result["ratios"].keys() == {"admit_p50_vs_target", "admit_vs_hash_floor", "verified_request_vs_plain"}


def test_the_redaction_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("redaction", "--kib", "4", "--secrets", "2", "--repetitions", "2",
                                target=tmp_path / "redaction.json")
    assert "ratios: clean" in out
    assert result["benchmark"] == "redaction" and (result["kib"], result["secrets"]) == (4, 2)
    assert result["forms"] >= 2 * 5 and result["ratios"].keys() == {"clean", "with secrets"}


def test_the_learning_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("learning", "--events", "300", "--live", "100", "--rate", "500", "--steps", "3",
                                "--repetitions", "1", target=tmp_path / "learning.json")
    assert "ratios: catch-up" in out
    assert result["benchmark"] == "learning" and (result["events"], result["live_events"]) == (300, 100)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert result["learned"]["position"] == 400 and result["learned"]["playbooks"] > 0
    assert {"raw", "catch_up", "live_published"} <= result["events_per_s"].keys()
    assert result["live_lag"]["samples"] > 0
    assert result["ratios"].keys() == {"catch_up_vs_raw", "catch_up_vs_target"}


def test_the_big_playbook_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("big", "--steps", "20,60", "--repetitions", "1", "--profile",
                                target=tmp_path / "big.json")
    assert "ratios: 20 steps" in out and "shell share" in out
    assert result["benchmark"] == "big" and [size["steps"] for size in result["sizes"]] == [20, 60]
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    for size in result["sizes"]:
        assert size["validate_s"] > 0 and size["floor_s"] > 0 and size["peak_rss_bytes"] > 0
        assert size["validate_cpu_s"] > 0 and size["security_cpu_s"] > 0
    small, large = result["sizes"]
    assert large["text_bytes"] > 2 * small["text_bytes"]
    assert result["ratios"].keys() == {"20", "60"} and result["profile"]


def test_the_as_run_benchmark_drives_playbook_up_with_the_cli_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("as-run", "--steps", "2", "--repetitions", "1", "--callers", "2", "--caller-steps", "2",
                                "--validate-steps", "20", "--huge-steps", "40", target=tmp_path / "as-run.json",
                                timeout=300)
    assert "ratios: help_ms" in out and "huge: 40 steps" in out
    assert result["benchmark"] == "as-run" and (result["callers"], result["caller_steps"]) == (2, 2)
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert {"interpreter_ms", "append_ms", "subprocess_ms", "events_per_step", "callers_s"} <= result["floors"].keys()
    # A phase of the 40-step run no probe fell in (on a busy machine, its start can be quicker than one) has no p99.
    probed = {f"huge_{phase}_p99_ms" for phase in result["huge"]["probe"] if phase != "idle"}
    assert probed and result["figures"].keys() == {
        "help_ms", "status_ms", "run_one_ms", "noop_step_ms", "shell_step_ms", "concurrent_s", "validate_20_s",
        "validate_20_mb", "huge_steps_per_s", *probed}
    assert all(f["floor"] > 0 for f in result["figures"].values())
    assert result["huge"]["steps"] == 40 and result["huge"]["probe"]["idle"]["n"] > 0
    assert result["floors"]["events_per_step"] >= 3    # scheduled, started, succeeded per step
    assert result["sse_messages"] > 0                  # the dashboard's client saw the runs


def test_the_guardian_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("guardian", "--processes", "5", "--rounds", "2", target=tmp_path / "guardian.json")
    assert "ratios: the guardian costs" in out
    assert result["benchmark"] == "guardian" and (result["processes"], result["rounds"]) == (5, 2)
    assert result["per_process_ms"].keys() == {"guarded", "unguarded", "floor"}
    assert all(len(values) == 2 for values in result["samples_ms"].values())
    assert result["ratios"].keys() == {"guarded_vs_unguarded", "guarded_vs_floor"}


def test_the_cluster_benchmark_runs_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("cluster", "--runs", "6", "--steps", "8", "--step-seconds", "0.5",
                                "--throughput-runs", "3", "--throughput-steps", "3", target=tmp_path / "cluster.json")
    assert "ratios: R3 events/s" in out
    assert result["benchmark"] == "cluster" and result["servers"] == 3
    assert {"cpu_count", "python", "nats_server"} <= result["machine"].keys()
    assert result["throughput"]["r1"]["events_per_second"] > 0 and result["throughput"]["r3"]["events"] > 0
    failover = result["failover"]
    assert failover["killed_leader"] != failover["new_leader"] and failover["kill_to_first_commit_seconds"] > 0
    assert (result["ratios"]["runs_lost"], result["ratios"]["attempts_started_twice"]) == (0, 0)


def test_the_huge_benchmark_starts_a_playbook_from_the_cli_and_writes_its_result(tmp_path: Path) -> None:
    out, result = run_benchmark("huge", "--steps", "40", target=tmp_path / "huge.json")
    assert "steps/s" in out and "p99 / idle p99" in out
    assert result["benchmark"] == "huge" and result["steps"] == 40 and result["steps_per_second"] > 0
    assert {"idle", "starting"} <= result["probe"].keys() and result["probe"]["idle"]["n"] > 0
    assert "starting_p99_vs_idle" in result["ratios"] and result["engine_peak_rss_bytes"] > 0
