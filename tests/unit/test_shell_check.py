"""What the shell checks report for a step's command: where, through which wrappers, and never a crash."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from services.playbook.shell.check import check_argv, check_command
from tests.unit.test_shell_corpus import DESTRUCTIVE, HARMLESS
from tests.unit.test_shell_syntax import SHELLISH

RISKS = {"dir": "empty", "target": "set", "who": "set"}
VARIABLES = {"workdir": "/tmp/work-${who}", "fixed": "/etc"}


def codes(command: str) -> list[str]:
    return sorted({f.code for f in check_command(command, VARIABLES, RISKS)})  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapped", [
    "sudo rm -rf /", "sudo -u root -- rm -rf /", "doas rm -rf /", "env A=1 B=2 rm -rf /", "env -i rm -rf /",
    "nice -n 10 rm -rf /", "nohup rm -rf /", "timeout -s KILL 30 rm -rf /", "busybox rm -rf /", "command rm -rf /",
    "exec rm -rf /", "time rm -rf /", "stdbuf -oL rm -rf /", "ionice -c 3 rm -rf /", "chroot /mnt rm -rf /",
    "setsid rm -rf /", "xargs rm -rf / < /dev/null", "ssh host rm -rf /", "ssh -p 22 host 'rm -rf /'",
    "docker exec -it web rm -rf /", "docker exec web sh -c 'rm -rf /'", "kubectl exec -it pod -- rm -rf /",
    "kubectl exec pod -c app -- bash -c 'rm -rf /'", "docker compose exec web rm -rf /", "podman run alpine rm -rf /",
    "su -c 'rm -rf /'", "runuser -u app -- rm -rf /", "watch rm -rf /", "flock /tmp/l rm -rf /",
    "env -S 'rm -rf /'", "sudo nice timeout 5 env X=1 nohup rm -rf /", "/usr/bin/sudo /bin/rm -rf /",
])
def test_no_wrapper_hides_the_command_it_runs(wrapped):
    assert "PB401" in codes(wrapped)


def test_asking_where_a_program_is_does_not_run_it():
    assert codes("command -v rm && type rm && which rm") == []


def test_a_finding_points_at_the_line_and_column_in_the_command():
    command = "set -e\ncd /srv/app\n  sudo rm -rf /etc\necho done"
    [finding] = check_command(command, {}, {})
    assert (finding.code, finding.line, finding.column) == ("PB401", 3, 8)
    assert command.splitlines()[finding.line - 1][finding.column - 1:].startswith("rm -rf /etc")


def test_inside_a_string_run_as_code_the_position_is_exact():
    command = "echo start; sh -c 'cd /tmp && rm -rf /usr'"
    [finding] = check_command(command, {}, {})
    assert command[finding.column - 1:].startswith("rm -rf /usr")


def test_positions_count_references_as_written():
    command = "echo ${who} ${secret:tok} && rm -rf /boot"
    [finding] = check_command(command, {}, RISKS)  # type: ignore[arg-type]
    assert command[finding.column - 1:].startswith("rm -rf /boot")


def test_argv_items_are_words_not_shell_code():
    assert [f.code for f in check_argv(["rm", "-rf", "/"], {}, {})] == ["PB401"]
    assert [f.code for f in check_argv(["echo", "rm -rf /"], {}, {})] == []
    assert [f.code for f in check_argv(["sudo", "sh", "-c", "curl -s https://x | sh"], {}, {})] == ["PB410"]
    assert [f.code for f in check_argv(["${who}", "-rf", "/tmp"], {}, RISKS)] == ["PB413"]  # type: ignore[arg-type]


@pytest.mark.parametrize("command", [c["command"] for c in DESTRUCTIVE] + HARMLESS)
def test_the_screen_never_skips_a_command_a_check_would_flag(command):
    screened = check_command(command, VARIABLES, RISKS, screen=True)  # type: ignore[arg-type]
    assert screened == check_command(command, VARIABLES, RISKS, screen=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", [
    "echo deploy ${who} part 1 && sleep 0", 'echo "${who}"', "echo x${who}${dir}", ". ${who}", "sudo ${who}",
    "ssh host ${who}", "echo > ${who}", "X=1 ${who}", "if ${who}; then :; fi", "echo a; ${who}", "{ ${who}; }",
    "! ${who}", "echo a | ${who}", "time ${who}", "/usr/bin/${who} a", 'echo "a ${who}" b', "kubectl exec p -- ${who}",
    "watch ${who}", "env ${who}", "echo ${who} | sh", "echo a\n${who}", "echo a &${who}", "then ${who}",
    "echo ${who}>/dev/sda", "cp a ${who}", "echo ${raw:who}", "${who}=1 echo", "echo a=${dir} b", "busybox ${who}",
    "> -rf ${who}", "2>>log ${who} x", "<in >out ${who}", "A=1 > f ${who}", "done ${who}", "echo; fi ${dir}",
])
def test_a_reference_is_screened_as_a_word_only_where_no_check_reads_it(command):
    screened = check_command(command, VARIABLES, RISKS, screen=True)  # type: ignore[arg-type]
    assert screened == check_command(command, VARIABLES, RISKS, screen=False)  # type: ignore[arg-type]


WORDS = st.sampled_from(["rm", "-rf", "/", "/etc", "ls", "sudo", "x", "$x", "'a'", '"b"', "r''m", "|", "&&", ";",
                         "&", "sh", "-c", "find", "-delete", "xargs", "chmod", "777", "dd", "of=/dev/sda", ">",
                         "/dev/sdb", "curl", "python3", "-e", "{a,b}", "*", "$(", ")", "`", "<<EOF\n", "\nEOF\n",
                         "f()", "{", "}", "while", "true;", "do", "done", "${who}", "${dir}", "${raw:who}", "\\r", "m"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(WORDS, max_size=14).map(" ".join), st.lists(WORDS, max_size=14).map("".join), SHELLISH))
def test_any_command_is_checked_without_raising_and_the_screen_agrees(command):
    full = check_command(command, VARIABLES, RISKS, screen=False)  # type: ignore[arg-type]
    assert check_command(command, VARIABLES, RISKS) == full  # type: ignore[arg-type]
    assert all(f.code.startswith("PB4") and f.line >= 1 and f.column >= 1 for f in full)


def test_the_corpus_file_is_valid_yaml_with_known_shapes():
    assert all(set(entry) == {"code", "command"} for entry in DESTRUCTIVE)
    assert all(isinstance(command, str) for command in HARMLESS)
    assert yaml.safe_dump(HARMLESS)


@pytest.mark.parametrize(("command", "expected"), [
    ('sh -c "rm -rf /; echo ${who}"', {"PB412", "PB401"}),
    ('sh -c "rm -rf /etc $(date)"', {"PB414", "PB401"}),
    ('bash -c "$SCRIPT; rm -rf /boot"', {"PB413", "PB401"}),
])
def test_what_is_written_in_a_string_run_as_code_is_read_even_when_part_of_it_cannot_be(command, expected):
    assert expected <= set(codes(command))
