"""Shell completion, written from the CLI's parser and run by the real shells: commands, options, choices, files."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from services.settings import Settings
from ui.cli.completion import commands_of, script
from ui.cli.main import parser

PARSER = parser(Settings())


def bash_completes(words: list[str], cwd: Path | None = None) -> list[str]:
    """What bash offers for the last word, with the script loaded as a user loads it."""
    program = (f"source /dev/stdin <<< \"$SCRIPT\"; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
               f"COMP_CWORD={len(words) - 1}; _playbook_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "--norc", "-c", program], env={**os.environ, "SCRIPT": script(PARSER, "bash")},
                          capture_output=True, text=True, cwd=cwd, check=True)
    return done.stdout.split()


def test_bash_completes_commands_options_choices_and_playbook_files(tmp_path: Path) -> None:
    assert bash_completes(["playbook", "re"]) == ["retry", "resume", "reject", "replay", "restore"]
    assert bash_completes(["playbook", "retry", "run1", "--f"]) == ["--from"]
    assert "--output" in bash_completes(["playbook", "status", "run1", "--"])
    assert bash_completes(["playbook", "completion", ""]) == ["bash", "zsh"]
    assert bash_completes(["playbook", "projections", "re"]) == ["rebuild"]
    (tmp_path / "deploy.yaml").write_text("name: deploy\n")
    assert bash_completes(["playbook", "run", "dep"], cwd=tmp_path) == ["deploy.yaml"]
    assert bash_completes(["playbook", "retry", "run1", "--playbook", "dep"], cwd=tmp_path) == ["deploy.yaml"]


def test_every_command_and_option_of_the_parser_is_in_both_scripts() -> None:
    bash, zsh = script(PARSER, "bash"), script(PARSER, "zsh")
    for command in commands_of(PARSER):
        assert f"        {command.name})" in bash and f"        {command.name}) _arguments" in zsh
        for option in command.options:
            for flag in option.flags:
                assert flag in bash and flag in zsh, (command.name, flag)


ZSH = shutil.which("zsh")
needs_zsh = pytest.mark.skipif(ZSH is None and os.environ.get("PLAYBOOK_REQUIRE_ZSH") != "1",
                               reason="zsh is not installed (Debian: apt-get install zsh)")


@needs_zsh
def test_zsh_offers_the_commands_then_each_commands_options(tmp_path: Path) -> None:
    # The completion system's functions are stood in for: they print what they were asked to offer.
    (tmp_path / "_playbook").write_text(script(PARSER, "zsh"))
    program = """
_describe() { print -r -- "commands: ${(j:,:)${(@)commands%%:*}}" }
_arguments() { print -r -- "arguments: ${(j: :)@}" }
compdef() { : }
source ./_playbook
words=(playbook re); CURRENT=2; _playbook
words=(playbook retry --); CURRENT=3; _playbook
words=(playbook completion ''); CURRENT=3; _playbook
"""
    done = subprocess.run([ZSH or "zsh", "-f", "-c", program], capture_output=True, text=True, cwd=tmp_path,
                          check=True)
    commands, retry, completion = done.stdout.splitlines()
    assert commands.startswith("commands: up,run,retry,") and ",completion" in commands
    assert "--from[run this step and everything downstream of it again" in retry and "--playbook[" in retry
    assert ":file:_files" in retry
    assert "1:shell:(bash zsh)" in completion
    assert subprocess.run([ZSH or "zsh", "-n", "_playbook"], cwd=tmp_path).returncode == 0
