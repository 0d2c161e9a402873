"""Validating a big playbook takes memory in proportion to its steps, not to their square.

Memory is traced (tracemalloc), not timed. The playbooks come from `bench.big`: parallel
groups, depends_on reaching far back, when conditions, validators and `${steps...}`
references near and far; shell steps are noop steps here, so the shell analysis (measured
by `python -m bench big`) does not make the test slow.
"""
from __future__ import annotations

import tracemalloc

from bench.big import playbook_text
from services.playbook import load_playbook, validate_playbook

BYTES_PER_STEP = 4_000  # the whole validation, text excluded; measured ~1,650 (it was ~240,000 at 10,000 steps)


def peak_of_validating(steps: int) -> int:
    text = playbook_text(steps, shell=False)
    tracemalloc.start()
    try:
        assert validate_playbook(text, "big.yaml") == []
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_ten_thousand_steps_validate_within_a_few_kilobytes_each_and_half_as_many_take_half_the_memory():
    five = peak_of_validating(5_000)
    ten = peak_of_validating(10_000)
    assert ten < 10_000 * BYTES_PER_STEP, f"{ten / 10_000:.0f} bytes per step"
    assert ten < 2.2 * five, f"10,000 steps took {ten / five:.2f}x the memory of 5,000"


def test_what_a_run_starts_with_is_the_same_plan_at_any_size():
    loaded = load_playbook(playbook_text(2_000, shell=False), "big.yaml")
    assert len(loaded.plan.needs) == len(loaded.playbook.steps) == 2_000
    group = [s.id for s in loaded.playbook.steps if s.parallel_group == "wave_0"]
    assert len(group) == 5 and all(loaded.plan.needs[s] == loaded.plan.needs[group[0]] for s in group)
