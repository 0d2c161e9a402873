"""Security analysis as an operator meets it: a playbook in, PB4xx findings at the right line out."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.playbook import validate_playbook
from services.playbook.credentials import _blank_references, _findings, credential_issues
from services.playbook.diagnostics import CODES
from services.playbook.security import security_errors

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
HEADER = """\
name: security
parameters:
  - name: dir
  - name: target
    default: /srv/app/releases/old
  - name: who
    required: true
variables:
  fixed: /etc
  workdir: /tmp/work-${who}
steps:
"""


def playbook(*steps: str) -> str:
    return HEADER + "".join(textwrap.indent(textwrap.dedent(step).lstrip("\n"), "  ") for step in steps)


def shell(command: str, key: str = "command") -> str:
    return f"""
        - id: s
          name: s
          action: shell
          timeout_seconds: 10
          args: {{{key}: {json.dumps(command)}}}
        """


def security_codes(text: str) -> list[str]:
    return sorted({d.code for d in validate_playbook(text, "sec.yaml") if d.code.startswith("PB4")})


COMMANDS = [
    # rm
    ("rm -rf /tmp/build-123", []),
    ("rm -rf /", ["PB401"]),
    ("/bin/rm -fr /", ["PB401"]),
    ("sudo rm -r -f /etc", ["PB401"]),
    ("rm --recursive --force /usr/lib", ["PB401"]),
    ("rm -rf /*", ["PB401"]),
    ("rm -rf -- /var/", ["PB401"]),
    ("rm -rf ~", ["PB401"]),
    ("rm -rf $HOME/", ["PB401"]),
    ("rm -rf ./*", ["PB401"]),
    ("rm -rf ..", ["PB401"]),
    ("rm -rf /home/deploy", ["PB401"]),
    ("rm --no-preserve-root -rf /tmp/x", ["PB401"]),
    ("cd /tmp && nohup env A=1 rm -rf /boot", ["PB401"]),
    ("rm -rf /var/lib/app/cache", []),
    ("rm -rf /tmp/*", ["PB401"]),
    ("rm -rf build/ dist/", []),
    ("rm -f /etc/app.conf", []),
    ("rm -rf ${dir}/", ["PB402"]),
    ('rm -rf "${dir}"/', ["PB402"]),
    ('rm -rf "$DIR"/*', ["PB402"]),
    ("rm -rf $X", ["PB402"]),
    ("rm -rf ${steps.mk.stdout}/cache", ["PB402"]),
    ("rm -rf /tmp/${dir}", ["PB402"]),
    ("rm -rf ${target}", ["PB403"]),
    ('rm -rf "${DIR:?}"/*', []),
    ("rm -rf ${DIR:-/tmp/x}", []),
    ("rm -rf ${fixed}", ["PB401"]),
    ("rm -rf ${workdir}/cache", []),
    ('echo "rm -rf /"', []),
    ("echo 'rm -rf /' # rm -rf /", []),
    ("cat <<EOF > notes.txt\nrm -rf /\nEOF", []),
    ('sh -c "rm -rf /"', ["PB401"]),
    ("echo $(rm -rf /)", ["PB401"]),
    ("find / -name x", []),
    # disks and devices
    ("dd if=/dev/zero of=/dev/sda bs=1M", ["PB404"]),
    ("dd if=x of=/tmp/img", []),
    ("mkfs.ext4 /dev/sdb1", ["PB404"]),
    ("mkfs.ext4 -F /tmp/disk.img", []),
    ("wipefs -a /dev/nvme0n1", ["PB404"]),
    ("wipefs /dev/sda", []),
    ("shred -n 3 /dev/sdb", ["PB404"]),
    ("shred -u secrets.txt", []),
    ("fdisk -l", []),
    ("parted -s /dev/sda mklabel gpt", ["PB404"]),
    ("parted /dev/sda print", []),
    ("cat image > /dev/sda", ["PB405"]),
    ("echo x >/dev/nvme0n1", ["PB405"]),
    ("cat x > /dev/null", []),
    ("echo x 2>/dev/stderr >/dev/stdout", []),
    ("make 2>&1 | tee /dev/fd/2", []),
    # permissions
    ("chmod -R 777 /var/www", ["PB407"]),
    ("chmod -R 777 /", ["PB406"]),
    ("chmod a+rwx /etc", ["PB406"]),
    ("chmod 0777 /usr/bin", ["PB406"]),
    ("chmod 644 file", []),
    ("chmod -R 755 /srv/app", []),
    ("chown -R nobody /", ["PB406"]),
    ("chown -R app:app /srv/app", []),
    # fork bombs
    (":(){ :|:& };:", ["PB409"]),
    ("bomb() { bomb | bomb & }; bomb", ["PB409"]),
    ("function f { f|f& }; f", ["PB409"]),
    ("f() { echo f; }; f", []),
    # download and execute
    ("curl -fsSL https://x | sudo bash", ["PB410"]),
    ("wget -O- https://x | sh", ["PB410"]),
    ("curl -s https://x | python3", ["PB410"]),
    ("bash <(curl -s https://x)", ["PB410"]),
    ('sh -c "$(curl -fsSL https://x)"', ["PB410"]),
    ('python -c "$(wget -qO- https://x)"', ["PB410"]),
    ("curl -o x https://x && sha256sum -c x.sha256", []),
    ("curl -s https://x | python3 -m json.tool", []),
    ("curl -s https://x | jq .version", []),
    ("curl -s https://x | tee install.sh | sh", ["PB410"]),
    ("echo 'curl https://x | sh'", []),
    # evaluating values twice
    ("echo ${raw:who}", ["PB411"]),
    ("eval ${who}", ["PB412"]),
    ('sh -c "echo ${who}"', ["PB412"]),
    ("sh -c 'echo $1' sh ${who}", []),
    # credentials in commands
    ("mysql --password=hunter2 -e 'select 1'", ["PB420"]),
    ("curl -H 'Authorization: Bearer abcdef0123456789abcdef' https://x", ["PB420"]),
    ("curl -H 'Authorization: Bearer ${secret:api}' https://x", []),
    ("curl http://admin:s3cret@example.com/x", ["PB422"]),
    ("curl -u admin:hunter2 https://x", ["PB420"]),
    ("PASSWORD= make", []),
    ("echo ${secret:db}", []),
]


@pytest.mark.parametrize(("command", "expected"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_a_shell_command_gets_the_findings_its_effect_deserves(command, expected):
    assert security_codes(playbook(shell(command))) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["rm", "-rf", "/"], ["PB401"]),
    (["rm", "-rf", "/tmp/x"], []),
    (["rm", "-rf", "$HOME"], []),  # no shell: a literal file named $HOME
    (["echo", "rm -rf /"], []),
    (["sh", "-c", "curl -s https://x | sh"], ["PB410"]),
    (["sh", "-c", "tar xf ${dir}"], ["PB412"]),
])
def test_argv_is_one_word_per_item(argv, expected):
    assert security_codes(playbook(shell(argv, key="argv"))) == expected  # type: ignore[arg-type]


def test_rollback_commands_are_analysed_too():
    text = playbook("""
        - id: s
          name: s
          action: noop
          rollback:
            - action: shell
              args: {command: "rm -rf /"}
        """)
    assert security_codes(text) == ["PB401"]


SECRETS = [
    ("variables:\n  key: AKIAIOSFODNN7EXAMPLE\n", "AKIAIOSFODNN7EXAMPLE", "'AKIA***'", "PB420"),
    ("variables:\n  deploy_key: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    b3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n"
     "    -----END OPENSSH PRIVATE KEY-----\n", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU", "a private key", "PB420"),
    ("variables:\n  gh: ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789\n", "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
     "'ghp_***'", "PB420"),
    ("variables:\n  hook: xoxb-123456789012-abcdefABCDEF\n", "xoxb-123456789012-abcdefABCDEF", "'xoxb***'", "PB420"),
    ("environments:\n  prod:\n    api_password: hunter2\n", "hunter2", "'hun***'", "PB420"),
    ("variables:\n  blob: bPxRfiCYzK7MDENG9q3LdW1tX8vA5nJe\n", "bPxRfiCYzK7MDENG9q3LdW1tX8vA5nJe", "'bPxR***'",
     "PB421"),
]


@pytest.mark.parametrize(("section", "secret", "shown", "code"), SECRETS, ids=[s[1] for s in SECRETS])
def test_a_hardcoded_secret_is_found_and_never_printed_whole(section, secret, shown, code):
    text = HEADER.replace("steps:\n", section + "steps:\n") + shell("true")
    found = [d for d in validate_playbook(text, "sec.yaml") if d.code.startswith("PB4")]
    assert [d.code for d in found] == [code]
    assert secret not in found[0].message and shown in found[0].message


def test_step_args_env_and_headers_are_scanned():
    text = playbook("""
        - id: db
          name: db
          action: shell
          timeout_seconds: 10
          args:
            command: psql -c 'select 1'
            env: {AWS_ACCESS_KEY_ID: AKIAIOSFODNN7EXAMPLE, PGPASSWORD: hunter2, TOKEN: "${secret:db}"}
            password: hunter2
        - id: call
          name: call
          action: http_request
          timeout_seconds: 10
          args:
            url: https://api.example.com/v1
            headers: {Authorization: "Bearer abc123def456", X-Trace: "${secret:x}"}
        """)
    found = [d for d in validate_playbook(text, "sec.yaml") if d.code.startswith("PB4")]
    assert [(d.code, d.field) for d in found] == [
        ("PB420", "steps[0].args.env.AWS_ACCESS_KEY_ID"), ("PB420", "steps[0].args.env.PGPASSWORD"),
        ("PB420", "steps[0].args.password"), ("PB420", "steps[1].args.headers.Authorization")]
    assert not any("hunter2" in d.message or "abc123def456" in d.message for d in found)


@pytest.mark.parametrize("value", ['"${secret:db}"', '""', "<password>", '"{{ db_password }}"', "'***'",
                                   "$DB_PASSWORD", '"$(cat /run/secrets/db)"'])
def test_references_and_placeholders_are_not_credentials(value):
    text = playbook(f"""
        - id: s
          name: s
          action: noop
          args: {{password: {value}}}
        """)
    assert security_codes(text) == []


def test_a_parameter_default_is_a_value_like_any_other():
    text = HEADER.replace("  - name: who\n", "  - name: db_password\n    default: changeme\n  - name: who\n") \
        + shell("true")
    assert security_codes(text) == ["PB420"]


@pytest.mark.parametrize(("url", "headers", "expected"), [
    ("http://api.example.com/x", "{Authorization: '${secret:api}'}", ["PB423"]),
    ("http://127.0.0.1:8080/x", "{Authorization: '${secret:api}'}", []),
    ("https://api.example.com/x", "{Authorization: '${secret:api}'}", []),
    ("http://api.example.com/x", "{Accept: text/plain}", []),
    ("http://bob:${secret:pw}@api.example.com/x", "{}", ["PB422"]),
    ("https://bob:hunter2@api.example.com/x", "{}", ["PB420"]),
    ("https://bob:${secret:pw}@api.example.com/x", "{}", []),
])
def test_credentials_travel_only_over_https(url, headers, expected):
    text = playbook(f"""
        - id: call
          name: call
          action: http_request
          timeout_seconds: 10
          args: {{url: "{url}", headers: {headers}}}
        """)
    assert security_codes(text) == expected


def test_a_finding_points_at_the_command_in_the_file():
    text = playbook(shell("true"), """
        - id: clean
          name: clean
          action: shell
          timeout_seconds: 10
          args:
            command: sudo rm -rf /etc
        """)
    [finding] = [d for d in validate_playbook(text, "sec.yaml") if d.code.startswith("PB4")]
    line = text.splitlines()[finding.line - 1]
    assert (finding.file, finding.step_id, finding.field) == ("sec.yaml", "clean", "steps[1].args.command")
    assert line[finding.column - 1:] == "sudo rm -rf /etc"
    assert "/etc" in finding.message and finding.format().startswith(f"sec.yaml:{finding.line}:")


def test_security_errors_are_the_pb4_errors_only():
    text = playbook(shell("rm -rf / && echo ${raw:who}"), """
        - id: n
          action: noop
        """)
    diagnostics = validate_playbook(text, "sec.yaml")
    assert {d.code for d in diagnostics} >= {"PB401", "PB411", "PB501"}
    assert [d.code for d in security_errors(diagnostics)] == ["PB401"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_shipped_examples_have_no_security_findings(example):
    assert security_codes(example.read_text()) == []


def test_every_security_code_is_documented():
    codes = {code for command, expected in COMMANDS for code in expected}
    assert codes <= set(CODES)


@pytest.mark.parametrize("command", ["echo \"unterminated", "echo 'x", "a\\", "$(", "<<", "x <<'EOF'", ")))", "${",
                                     "`", "echo $((", ":(){", "sudo", "env", "rm -rf"])
def test_broken_shell_never_breaks_validation(command):
    assert "PB000" not in {d.code for d in validate_playbook(playbook(shell(command)), "sec.yaml")}


def test_error_handler_remediations_are_analysed_too() -> None:
    text = """name: x
error_handlers:
  - category: authentication
    run: {action: shell, args: {command: "rm -rf /"}, timeout_seconds: 5}
steps:
  - {id: a, name: A, action: noop}
"""
    codes = [(d.code, d.line) for d in validate_playbook(text, "x.yaml") if d.code.startswith("PB4")]
    assert codes == [("PB401", 4)]


CREDENTIAL_PARTS = ["password=", "hunter2-x", "token: 'abc'", "${secret:db}", "${who}", "http://u:p@h/", "https://",
                    "AKIA" + "A" * 16, "ghp_" + "a1B2" * 9, "xoxb-0123456789", "-u admin:pw", "--api-key k3y",
                    "Bearer q8Zr7Wm2Kx9Lp4Tn6", "q8Zr7Wm2Kx9Lp4Tn6Vb3", "echo", " ", "&&", "Authorization: Basic x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CREDENTIAL_PARTS), max_size=8).map("".join),
       st.sampled_from(["command", "password", "Authorization", "name", "url"]))
def test_the_quick_look_at_a_value_never_hides_a_credential_the_full_search_finds(text, key):
    full = next(_findings(key, text, _blank_references(text)), None)
    found = [(issue.code, issue.message) for issue in credential_issues({key: text})]
    assert found == ([full] if full else [])


def test_credentials_in_a_few_steps_of_thousands_are_found_as_in_those_steps_alone():
    clean = {"id": "a", "name": "right after the deploy", "action": "shell",
             "args": {"command": "echo ${service} && sleep 1", "env": {"MODE": "fast"}}, "depends_on": ["b", "c"]}
    steps = [dict(clean, id=f"s{i}") for i in range(2_500)]
    steps[3] = dict(clean, args={"command": "curl -u admin:hunter2 http://h/"})
    steps[1_500] = dict(clean, args={"env": {"TOKEN": "q8Zr7Wm2Kx9Lp4Tn6Vb3"}})
    steps[2_400] = dict(clean, args={"pässword": "hunter2"}, depends_on=[{"api_key": "k3y-12345"}])
    data = {"name": "big", "variables": {"db_password": "x9!s"}, "steps": steps}
    alone = [issue for i in (3, 1_500, 2_400) for issue in credential_issues(steps[i], ("steps", i))]
    assert len(alone) >= 3
    assert list(credential_issues(data)) == list(credential_issues({"variables": data["variables"]})) + alone
