"""The analysis corpus: every destructive command flagged with its code, every harmless one clean."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.playbook import validate_playbook
from tests.unit.test_security import playbook, shell

CORPUS = yaml.safe_load((Path(__file__).parent / "shell_corpus.yaml").read_text())
DESTRUCTIVE: list[dict[str, str]] = CORPUS["destructive"]
HARMLESS: list[str] = CORPUS["harmless"]


def findings(command: str) -> set[str]:
    return {d.code for d in validate_playbook(playbook(shell(command)), "corpus.yaml") if d.code.startswith("PB4")}


def test_the_corpus_is_large_enough_to_mean_something():
    assert len(DESTRUCTIVE) >= 100 and len(HARMLESS) >= 100
    assert len({c["command"] for c in DESTRUCTIVE}) == len(DESTRUCTIVE) and len(set(HARMLESS)) == len(HARMLESS)


def test_every_destructive_form_is_flagged_and_every_harmless_one_stays_clean(capsys):
    missed = [(c["code"], c["command"], sorted(found)) for c in DESTRUCTIVE
              if c["code"] not in (found := findings(c["command"]))]
    noisy = [(command, sorted(found)) for command in HARMLESS if (found := findings(command))]
    with capsys.disabled():
        print(f"\nshell corpus: {len(DESTRUCTIVE) - len(missed)}/{len(DESTRUCTIVE)} destructive flagged with their "
              f"code, {len(HARMLESS) - len(noisy)}/{len(HARMLESS)} harmless clean")
    assert missed == [] and noisy == []


@pytest.mark.parametrize("code", sorted({c["code"] for c in DESTRUCTIVE}))
def test_each_code_in_the_corpus_is_in_the_catalogue(code):
    from services.playbook.diagnostics import CODES
    assert code in CODES
