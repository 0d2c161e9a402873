"""Validation as a user meets it: a broken playbook in, a diagnostic naming line, column and step out."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from bench.big import playbook_text
from events.playbook import Playbook
from services.playbook import CODES, Diagnostic, LoadedPlaybook, PlaybookInvalid, load_playbook, validate_playbook
from services.playbook.diagnostics import severity_of
from services.playbook.schema_check import STEPS_PER_CALL, check_schema


def yaml_text(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


GOOD = yaml_text("""
    name: deploy-web
    parameters:
      - name: region
        type: string
        choices: [eu, us]
        default: eu
      - name: replicas
        type: integer
        required: true
      - name: environment
    variables:
      image: "web:${region}"
    environments:
      prod: {region: us, replicas: 3}
    steps:
      - id: build
        name: Build
        action: shell
        timeout_seconds: 60
        args: {command: "make IMAGE=${image} REGION=$${REGION}"}
        outputs: [{name: digest, from: stdout}]
      - id: push
        name: Push
        action: http_request
        args:
          url: "https://registry/${steps.build.digest}"
          headers: {Authorization: "${secret:REGISTRY}", X-Home: "${env.HOME}"}
        validations:
          - {type: equals, left: "${status_code}", right: 201}
      - id: deploy
        name: Deploy
        action: noop
        depends_on: [push]
        args: {outputs: {count: "${replicas}", digest: "${steps.build.digest}", release: "r-${replicas}"}}
        rollback:
          - action: noop
            args: {message: "${steps.deploy.release}"}
""")


def test_a_good_playbook_has_no_diagnostics():
    assert validate_playbook(GOOD, "web.yaml", parameters={"replicas": "2"}) == []


def test_loading_a_good_playbook_gives_its_plan_and_typed_parameters():
    loaded = load_playbook(GOOD, "web.yaml", parameters={"replicas": "2"}, environment="prod")
    assert isinstance(loaded, LoadedPlaybook)
    assert loaded.plan.needs == {"build": [], "push": ["build"], "deploy": ["push"]}
    assert loaded.parameters == {"region": "us", "replicas": 2, "environment": "prod"}
    assert loaded.environment == "prod" and loaded.warnings == []


# (case, playbook text, keyword arguments, code, line, column, step id)
BROKEN = [
    ("malformed YAML", """
        name: x
          steps: []
        """, {}, "PB001", 2, 8, None),
    ("unclosed flow list", """
        name: x
        steps: [a, b
        """, {}, "PB001", 3, 1, None),
    ("python tag", """
        name: !!python/object/apply:os.system ["ls"]
        steps: []
        """, {}, "PB001", 1, 7, None),
    ("custom tag on a mapping", """
        name: x
        steps: !steps {}
        """, {}, "PB001", 2, 8, None),
    ("document is a list", """
        - id: a
          action: noop
        """, {}, "PB002", 1, 1, None),
    ("empty document", "", {}, "PB002", 1, 1, None),
    ("duplicate key in a step", """
        name: x
        steps:
          - id: a
            action: noop
            action: shell
        """, {}, "PB003", 5, 5, "a"),
    ("unknown key with suggestion", """
        name: x
        steps:
          - id: a
            action: noop
          - id: b
            action: noop
            dependson: [a]
        """, {}, "PB101", 7, 5, "b"),
    ("unknown top-level key", """
        name: x
        descripton: typo
        steps: [{id: a, action: noop}]
        """, {}, "PB101", 2, 1, None),
    ("unknown key in retry", """
        name: x
        steps:
          - id: a
            action: noop
            retry: {max_attemps: 3}
        """, {}, "PB101", 5, 13, "a"),
    ("missing action", """
        name: x
        steps:
          - id: a
            name: first
        """, {}, "PB102", 3, 5, "a"),
    ("missing playbook name", """
        steps:
          - id: a
            action: noop
        """, {}, "PB102", 1, 1, None),
    ("timeout_seconds not a number", """
        name: x
        steps:
          - id: a
            action: noop
            timeout_seconds: ten
        """, {}, "PB103", 5, 22, "a"),
    ("steps not a list", """
        name: x
        steps:
          a: {action: noop}
        """, {}, "PB103", 3, 3, None),
    ("a step that is a string", """
        name: x
        steps:
          - id: a
            action: noop
          - deploy
        """, {}, "PB103", 5, 5, None),
    ("depends_on as a string", """
        name: x
        steps:
          - {id: a, action: noop}
          - {id: b, action: noop, depends_on: a}
        """, {}, "PB103", 4, 39, "b"),
    ("on_failure bad value", """
        name: x
        on_failure: abort
        steps: [{id: a, action: noop}]
        """, {}, "PB104", 2, 13, None),
    ("retry jitter bad value", """
        name: x
        steps:
          - id: a
            action: noop
            retry: {jitter: half}
        """, {}, "PB104", 5, 21, "a"),
    ("empty steps", """
        name: x
        steps: []
        """, {}, "PB105", 2, 8, None),
    ("duplicate step id", """
        name: x
        steps:
          - {id: a, action: noop}
          - {id: a, action: noop}
        """, {}, "PB201", 4, 10, "a"),
    ("bad characters in id", """
        name: x
        steps:
          - id: web.deploy
            action: noop
        """, {}, "PB202", 3, 9, "web.deploy"),
    ("unknown depends_on", """
        name: x
        steps:
          - {id: build, action: noop}
          - {id: deploy, action: noop, depends_on: [biuld]}
        """, {}, "PB203", 4, 45, "deploy"),
    ("depends_on cycle", """
        name: x
        steps:
          - {id: a, action: noop, depends_on: [c]}
          - {id: b, action: noop}
          - {id: c, action: noop}
        """, {}, "PB204", 3, 40, "a"),
    ("split parallel group", """
        name: x
        steps:
          - {id: a, action: noop, parallel_group: web}
          - {id: b, action: noop}
          - {id: c, action: noop, parallel_group: web}
        """, {}, "PB205", 5, 43, "c"),
    ("unknown action", """
        name: x
        steps:
          - id: a
            action: shel
        """, {}, "PB206", 4, 13, "a"),
    ("unknown rollback action", """
        name: x
        steps:
          - id: a
            action: noop
            rollback:
              - action: undo
        """, {}, "PB206", 6, 17, "a"),
    ("unresolved name", """
        name: x
        parameters: [{name: region}]
        steps:
          - id: a
            action: noop
            args: {message: "${regon}"}
        """, {}, "PB207", 6, 21, "a"),
    ("unknown step in reference", """
        name: x
        steps:
          - id: a
            action: noop
            args: {message: "${steps.nope.out}"}
        """, {}, "PB208", 5, 21, "a"),
    ("output of a later step", """
        name: x
        steps:
          - id: a
            action: noop
            args: {message: "${steps.b.out}"}
          - id: b
            action: noop
            args: {outputs: {out: 1}}
        """, {}, "PB209", 5, 21, "a"),
    ("output of a parallel sibling", """
        name: x
        steps:
          - {id: a, action: noop, parallel_group: g, args: {outputs: {ok: 1}}}
          - {id: b, action: noop, parallel_group: g, when: "${steps.a.ok}"}
        """, {}, "PB209", 4, 52, "b"),
    ("own output in args", """
        name: x
        steps:
          - id: a
            action: noop
            args: {message: "${steps.a.message}"}
        """, {}, "PB209", 5, 21, "a"),
    ("unclosed reference", """
        name: x
        steps:
          - id: a
            action: noop
            approval_gate: {message: "deploy ${version"}
        """, {}, "PB210", 5, 30, "a"),
    ("missing required parameter", """
        name: x
        parameters:
          - {name: version, required: true}
        steps: [{id: a, action: noop}]
        """, {"parameters": {}}, "PB301", 3, 5, None),
    ("wrong parameter type", """
        name: x
        parameters:
          - {name: replicas, type: integer}
        steps: [{id: a, action: noop}]
        """, {"parameters": {"replicas": "three"}}, "PB302", 3, 5, None),
    ("default of the wrong type", """
        name: x
        parameters:
          - name: replicas
            type: integer
            default: many
        steps: [{id: a, action: noop}]
        """, {}, "PB302", 5, 14, None),
    ("bad choice", """
        name: x
        parameters:
          - {name: region, choices: [eu, us]}
        steps: [{id: a, action: noop}]
        """, {"parameters": {"region": "asia"}}, "PB303", 3, 5, None),
    ("unknown environment", """
        name: x
        environments:
          staging: {}
        steps: [{id: a, action: noop}]
        """, {"environment": "prod"}, "PB304", 2, 1, None),
    ("unknown parameter given", """
        name: x
        parameters: [{name: region}]
        steps: [{id: a, action: noop}]
        """, {"parameters": {"regoin": "eu"}}, "PB305", None, None, None),
    ("parameter declared twice", """
        name: x
        parameters:
          - {name: region}
          - {name: region}
        steps: [{id: a, action: noop}]
        """, {}, "PB306", 4, 12, None),
    ("shell without timeout", """
        name: x
        steps:
          - {id: a, name: A, action: shell, args: {command: ls}}
        """, {}, "PB502", 3, 5, "a"),
    ("environment sets an undeclared name", """
        name: x
        parameters: [{name: region}]
        environments:
          prod: {regoin: eu}
        steps: [{id: a, action: noop}]
        """, {}, "PB503", 4, 10, None),
    ("unknown validator type", """
        name: x
        steps:
          - id: a
            action: noop
            validators:
              - {type: disk, path: /}
        """, {}, "PB104", 6, 16, "a"),
    ("circuit failure rate above 1", """
        name: x
        steps:
          - id: a
            action: http_request
            args: {url: "http://db/"}
            circuit: {failure_rate: 1.5}
        """, {}, "PB104", 6, 29, "a"),
    ("unknown key in a validator", """
        name: x
        steps:
          - id: a
            action: noop
            validators:
              - type: disk_space
                min_free: 10
        """, {}, "PB101", 7, 9, "a"),
    ("validator without a type", """
        name: x
        steps:
          - id: a
            action: noop
            validators:
              - {path: /tmp}
        """, {}, "PB102", 6, 9, "a"),
    ("validator missing its required key", """
        name: x
        steps:
          - id: a
            action: noop
            validators:
              - {type: port_open, host: db}
        """, {}, "PB102", 6, 9, "a"),
    ("validator value of the wrong type", """
        name: x
        steps:
          - id: a
            action: noop
            validators:
              - {type: port_open, port: eighty}
        """, {}, "PB103", 6, 33, "a"),
    ("validator value not allowed", """
        name: x
        steps:
          - id: a
            action: noop
            validators:
              - {type: file_exists, path: /srv, kind: folder}
        """, {}, "PB104", 6, 47, "a"),
    ("action argument out of range", """
        name: x
        steps:
          - id: a
            action: wait
            args: {seconds: -5}
        """, {}, "PB107", 5, 21, "a"),
    ("unknown action argument", """
        name: x
        steps:
          - id: a
            action: noop
            args: {zzz: 1}
        """, {}, "PB107", 5, 12, "a"),
]


@pytest.mark.parametrize(("text", "kwargs", "code", "line", "column", "step_id"),
                         [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_a_broken_playbook_is_reported_where_it_is_broken(text, kwargs, code, line, column, step_id):
    diagnostics = validate_playbook(yaml_text(text), "broken.yaml", **kwargs)
    found = [d for d in diagnostics if d.code == code]
    assert found, f"expected {code}, got:\n" + "\n".join(map(str, diagnostics))
    assert (found[0].line, found[0].column, found[0].step_id) == (line, column, step_id), str(found[0])
    assert found[0].file == "broken.yaml" and found[0].severity == severity_of(code)
    assert "PB000" not in {d.code for d in diagnostics}


def test_the_table_covers_enough_distinct_codes():
    assert len(BROKEN) >= 25 and len({case[3] for case in BROKEN}) >= 25


@pytest.mark.parametrize(("text", "expected"), [
    ("name: x\nsteps:\n  - {id: a, action: noop, dependson: []}\n", "did you mean 'depends_on'?"),
    ("name: x\nsteps:\n  - {id: a, action: shel}\n", "did you mean 'shell'?"),
    ("name: x\nsteps:\n  - {id: a, action: noop, depends_on: [a]}\n", "dependency cycle: a -> a"),
    ("name: x\non_failure: rolback\nsteps:\n  - {id: a, action: noop}\n", "did you mean 'rollback'?"),
    ("name: x\nsteps:\n  - {id: a, action: noop, args: {message: '${HOME}'}}\n", "$${HOME}"),
])
def test_messages_say_how_to_fix_it(text, expected):
    messages = [d.message for d in validate_playbook(text)]
    assert any(expected in message for message in messages), messages


def test_a_cycle_is_named_in_the_order_steps_wait_for_each_other():
    text = yaml_text("""
        name: x
        steps:
          - {id: a, action: noop, depends_on: [c]}
          - {id: b, action: noop}
          - {id: c, action: noop}
        """)
    [cycle] = [d for d in validate_playbook(text) if d.code == "PB204"]
    assert "a -> c -> b -> a" in cycle.message


def test_every_bad_step_is_reported_in_one_pass():
    text = yaml_text("""
        name: x
        steps:
          - {id: a, action: noop, timeout_seconds: soon, colour: red}
          - {id: b}
          - {id: c, action: noop, retry: {jitter: some}}
        """)
    found = {(d.code, d.step_id) for d in validate_playbook(text)}
    assert {("PB103", "a"), ("PB101", "a"), ("PB102", "b"), ("PB104", "c")} <= found


def test_a_key_that_failed_the_schema_raises_no_second_complaint():
    text = ("name: x\nsteps:\n  - {id: 'bad id', action: shell, args: {argv: [ls]}, timeout_seconds: [1]}\n"
            "  - {action: noop}\n")
    codes = sorted(d.code for d in validate_playbook(text))
    assert codes == ["PB102", "PB103", "PB202", "PB501", "PB501"]


def test_items_after_a_bad_one_keep_their_place():
    text = yaml_text("""
        name: x
        parameters:
          - 42
          - {name: version, required: true}
        steps:
          - [not, a, step]
          - {id: a, name: A, action: noop, depends_on: [nope]}
        """)
    found = {(d.code, d.field) for d in validate_playbook(text, parameters={})}
    assert {("PB301", "parameters[1]"), ("PB203", "steps[1].depends_on[0]")} <= found


def test_a_value_of_the_wrong_type_is_not_also_missing():
    text = "name: x\nparameters: [{name: n, type: integer, required: true}]\nsteps: [{id: a, name: A, action: noop}]\n"
    assert [d.code for d in validate_playbook(text, parameters={"n": "x"})] == ["PB302"]


def test_a_diagnostic_reads_like_a_compiler_message():
    [diagnostic] = validate_playbook("name: x\nsteps:\n  - {id: deploy, name: D, action: shel}\n", "web.yaml")
    assert str(diagnostic) == "web.yaml:3:35: error PB206 [step deploy] unknown action 'shel' — did you mean 'shell'?"
    assert diagnostic.field == "steps[0].action"


def test_diagnostics_are_sorted_by_line():
    text = "name: x\nsteps:\n  - {id: a, action: nope}\n  - {id: a, action: noop}\n"
    lines = [d.line for d in validate_playbook(text)]
    assert lines == sorted(lines)


def test_references_that_are_fine():
    text = yaml_text("""
        name: x
        variables: {base: /srv}
        steps:
          - id: a
            name: A
            action: noop
            args: {outputs: {path: "${base}/x", literal: "$${not_a_ref}", env: "${env.USER}", key: "${secret:API_KEY}",
                             status_code: 200, body: "", id: 1, ok: true}}
            validations:
              - {type: equals, left: "${status_code}", right: 200, message: "${steps.a.body}"}
            rollback:
              - {action: noop, args: {message: "${steps.a.id}"}}
          - id: b
            name: B
            action: noop
            when: "${steps.a.ok}"
            args: {message: "${raw:base}"}
        """)
    assert validate_playbook(text) == []


def test_known_actions_can_be_given():
    text = "name: x\nsteps:\n  - {id: a, name: A, action: kubectl_apply}\n"
    assert validate_playbook(text, known_actions={"kubectl_apply"}) == []
    assert [d.code for d in validate_playbook(text)] == ["PB206"]


def test_required_parameters_are_only_checked_when_values_are_given():
    text = "name: x\nparameters: [{name: v, required: true}]\nenvironments: {prod: {}}\n" \
           "steps: [{id: a, name: A, action: noop}]\n"
    assert [(d.code, d.severity) for d in validate_playbook(text)] == [("PB505", "info")]   # the file is fine
    assert [d.code for d in validate_playbook(text, parameters={})] == ["PB301"]
    assert [d.code for d in validate_playbook(text, environment="prod")] == ["PB301"]   # as `run --env prod` says


# -- validate says what run would: the same file, --env and -p ----------------------------------

REGIONAL = yaml_text("""
    name: regional
    parameters: [{name: version, required: true}]
    environments:
      prod: {region: eu, version: "2"}
      dev: {}
    steps:
      - {id: a, name: A, action: noop, args: {message: "${region} ${version}"}}
    """)


def refusal(**run: Any) -> list[str]:
    """The error codes `run` refuses with (`playbook run` passes its -p values, none being {})."""
    try:
        load_playbook(REGIONAL, **run)
    except PlaybookInvalid as refused:
        return sorted(d.code for d in refused.diagnostics if d.severity == "error")
    return []


@pytest.mark.parametrize(("environment", "parameters"), [
    ("dev", None), ("dev", {"version": "1"}), ("prod", None), (None, {"version": "1"}), ("moon", None),
])
def test_validate_with_env_or_values_reports_what_run_would_refuse(environment, parameters):
    said = sorted(d.code for d in validate_playbook(REGIONAL, environment=environment, parameters=parameters)
                  if d.severity == "error")
    assert said == refusal(environment=environment, parameters=parameters or {})


def test_an_environment_that_lacks_a_variable_is_an_error_without_any_value_given():
    [error] = [d for d in validate_playbook(REGIONAL, environment="dev", parameters={"version": "1"})]
    assert (error.code, error.line) == ("PB308", 5)
    assert error.message.startswith("environment 'dev' does not set 'region', which only environment prod sets")
    assert [d.code for d in validate_playbook(REGIONAL, environment="dev")] == ["PB301", "PB308"]


def test_validate_alone_says_what_a_run_must_be_given_without_calling_the_file_broken():
    found = [(d.code, d.severity, d.message) for d in validate_playbook(REGIONAL)]
    assert found == [
        ("PB505", "info", "parameter 'version' is required and has no default; a run must give it with "
                          "-p version=<value>, or choose an environment that sets it (prod) with --env"),
        ("PB505", "info", "'region' is a variable only environment prod sets; a run must choose one with --env"),
    ]
    assert refusal(parameters={}) == ["PB301", "PB308"]      # what `run` with no --env and no -p would say


# -- action arguments: what the step would fail on, said before the run -------------------------

@pytest.mark.parametrize(("step", "field", "message"), [
    ("action: wait, args: {seconds: -5}", "steps[0].args.seconds", "wait: 'seconds' must be a number >= 0, got -5"),
    ("action: wait", "steps[0].args.seconds", "wait: 'seconds' is required"),
    ("action: http_request, args: {}", "steps[0].args.url", "http_request: 'url' is required"),
    ("action: http_request, args: {url: 'ftp://x/y'}", "steps[0].args.url",
     "http_request: 'url' must be an absolute http:// or https:// URL"),
    ("action: http_request, args: {url: 'http://127.0.0.1:99999/'}", "steps[0].args.url",
     "http_request: 'url' must be an absolute http:// or https:// URL"),   # a port no request can use
    ("action: http_request, args: {url: 'https://x', json: {}, data: x}", "steps[0].args",
     "http_request: 'json' and 'data' exclude each other; give one"),
    ("action: shell, timeout_seconds: 5, args: {}", "steps[0].args", "shell: 'command' or 'argv' is required"),
    ("action: shell, timeout_seconds: 5, args: {command: 'true', bogus: 1}", "steps[0].args.bogus",
     "shell: unknown arg 'bogus'"),
    ("action: shell, timeout_seconds: 5, args: {argv: [ls], max_output_bytes: lots}", "steps[0].args.max_output_bytes",
     "shell: 'max_output_bytes' must be an integer >= 0, got str"),
    ("action: noop, args: {zzz: 1}", "steps[0].args.zzz", "noop: unknown arg 'zzz'"),
    ("action: noop, args: {mesage: hi}", "steps[0].args.mesage",
     "noop: unknown arg 'mesage' — did you mean 'message'?"),
])
def test_an_argument_the_step_would_fail_on_is_an_error_naming_the_step_and_the_argument(step, field, message):
    text = f"name: x\nsteps:\n  - {{id: a, name: A, {step}}}\n"
    found = [(d.code, d.severity, d.step_id, d.field, d.message) for d in validate_playbook(text)]
    assert found == [("PB107", "error", "a", field, message)]


def test_an_argument_known_only_when_the_step_runs_is_checked_then():
    text = yaml_text("""
        name: x
        parameters: [{name: delay, default: "5"}, {name: base, type: url, default: "https://example.com"}]
        steps:
          - {id: a, name: A, action: wait, args: {seconds: "${delay}"}}
          - {id: b, name: B, action: http_request,
             args: {url: "${base}/health", expect_status: ["${steps.a.waited_seconds}"]}}
          - {id: c, name: C, action: noop, args: {outputs: "${steps.b.json}"}}
        """)
    assert validate_playbook(text) == []
    misspelt = text.replace("{seconds: ", "{secs: ")
    assert [(d.code, d.field) for d in validate_playbook(misspelt)] == [("PB107", "steps[0].args.seconds"),
                                                                         ("PB107", "steps[0].args.secs")]


def test_a_rollback_actions_arguments_are_checked_too():
    text = yaml_text("""
        name: x
        steps:
          - id: a
            name: A
            action: noop
            args: {message: built}
            rollback:
              - {action: wait, args: {seconds: -1}}
              - {action: noop, args: {message: "${message}"}}
        """)
    assert [(d.code, d.field, d.message) for d in validate_playbook(text)] == [
        ("PB107", "steps[0].rollback[0].args.seconds", "wait: 'seconds' must be a number >= 0, got -1")]


def test_arguments_of_actions_the_language_does_not_define_are_not_checked():
    text = "name: x\nsteps:\n  - {id: a, name: A, action: kubectl_apply, args: {manifest: x.yaml}}\n"
    assert validate_playbook(text, known_actions={"kubectl_apply"}) == []


def test_load_raises_with_every_diagnostic():
    with pytest.raises(PlaybookInvalid) as raised:
        load_playbook("name: x\nsteps:\n  - {id: a, action: shel}\n  - {id: b}\n", "x.yaml")
    assert {d.code for d in raised.value.diagnostics} >= {"PB206", "PB102"}
    assert str(raised.value).startswith("x.yaml:3:")


def test_warnings_travel_with_the_loaded_playbook():
    loaded = load_playbook("name: x\nsteps:\n  - {id: a, action: shell, args: {argv: [ls]}}\n")
    assert [d.code for d in loaded.warnings] == ["PB501", "PB502"]


def test_a_validator_bug_becomes_a_diagnostic(monkeypatch):
    import services.playbook.validate as validate

    def explode(text):
        raise RuntimeError("boom")

    monkeypatch.setattr(validate, "load_yaml", explode)
    [diagnostic] = validate_playbook("name: x", "x.yaml")
    assert (diagnostic.code, diagnostic.file) == ("PB000", "x.yaml") and "boom" in diagnostic.message
    with pytest.raises(PlaybookInvalid):
        load_playbook("name: x")


def test_every_code_used_is_in_the_table():
    source = Path(__file__).parents[2] / "services" / "playbook"
    used = {code for path in source.glob("*.py") for code in re.findall(r'"(PB\d{3})"', path.read_text())}
    assert used <= set(CODES)
    assert all(code in CODES for code in {case[3] for case in BROKEN})


# Random input must never make the validator raise.
try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # without hypothesis only these two tests are skipped, not the table above
    given = settings = st = None


def _only_diagnostics(result):
    assert isinstance(result, list) and all(isinstance(d, Diagnostic) for d in result)
    assert "PB000" not in {d.code for d in result}, [str(d) for d in result]


if st is None:
    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_random_input_never_raises():
        pass
else:
    _keys = st.sampled_from(["id", "action", "name", "args", "depends_on", "parallel_group", "when", "timeout_seconds",
                             "retry", "rollback", "outputs", "validations", "approval_gate", "max_attempts", "jitter",
                             "type", "left", "from", "required", "choices", "default", "steps", "parameters", "x"])
    _scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                         st.sampled_from(["a", "b", "noop", "shell", "${a}", "${steps.a.x}", "${", "g", "$${x}"]))
    _values = st.recursive(_scalars,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
                           max_leaves=20)
    _steps = st.lists(st.dictionaries(_keys, _values, max_size=6) | _values, max_size=6)
    _playbooks = st.fixed_dictionaries(
        {"name": _values, "steps": _steps},
        optional={"parameters": st.lists(st.dictionaries(_keys, _values, max_size=4)),
                  "environments": st.dictionaries(st.text(max_size=5), _values, max_size=3),
                  "variables": st.dictionaries(st.text(max_size=5), _values, max_size=3),
                  "on_failure": _values, "version": _values})

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=200))
    def test_random_text_never_raises(text):
        _only_diagnostics(validate_playbook(text))

    @settings(max_examples=300, deadline=None)
    @given(_playbooks, st.none() | st.dictionaries(_keys, _values, max_size=3),
           st.none() | st.sampled_from(["prod", "x"]))
    def test_random_playbook_shapes_never_raise(data, parameters, environment):
        _only_diagnostics(validate_playbook(yaml.safe_dump(data), parameters=parameters, environment=environment))


@pytest.mark.parametrize(("validator", "expected"), [
    ("{type: disk, path: /}", "unknown validator type 'disk' — did you mean 'disk_space'?"),
    ("{type: http_stats, url: 'http://x'}", "unknown validator type 'http_stats' — did you mean 'http_status'?"),
    ("{type: ping}", "unknown validator type 'ping'; use one of: http_status, port_open, file_exists, disk_space, "
                     "memory_usage, command_succeeds"),
    ("{path: /}", "'validators[0]' is missing the required key 'type'; use one of: http_status, port_open"),
    ("{type: disk_space, min_free: 3}", "unknown key 'min_free' in 'validators[0]' — did you mean 'min_free_gb'?"),
    ("{type: memory_usage, max_used_percent: 90, colour: red}",
     "unknown key 'colour' in 'validators[0]'; allowed keys: type, message, max_used_percent"),
])
def test_a_bad_validator_is_named_with_a_way_to_fix_it(validator, expected):
    text = f"name: x\nsteps:\n  - {{id: a, name: A, action: noop, validators: [{validator}]}}\n"
    messages = [d.message for d in validate_playbook(text)]
    assert any(expected in message for message in messages), messages


def test_every_validator_type_loads_with_its_defaults():
    text = yaml_text("""
        name: x
        steps:
          - id: a
            name: A
            action: noop
            validators:
              - {type: http_status, url: "http://127.0.0.1/health", expected_status: [200, 204]}
              - {type: port_open, port: 5432}
              - {type: file_exists, path: /etc, kind: directory}
              - {type: disk_space, min_free_percent: 5}
              - {type: memory_usage, max_used_percent: 95}
              - {type: command_succeeds, argv: [test, -d, /tmp], message: "tmp must exist"}
        """)
    [http, port, file, disk, memory, command] = load_playbook(text).playbook.steps[0].validators
    assert (http.method, http.timeout_seconds, http.expected_status) == ("GET", 10, [200, 204])
    assert (port.host, port.port, port.timeout_seconds) == ("127.0.0.1", 5432, 5)
    assert (file.kind, disk.path, disk.min_free_gb, memory.max_used_percent) == ("directory", "/", None, 95)
    assert (command.command, command.timeout_seconds, command.expected_returncode) == (None, 30, 0)
    assert command.message == "tmp must exist"


def test_a_big_playbook_converts_a_slice_of_steps_at_a_time_to_what_one_call_gives() -> None:
    """One msgspec call holds the GIL throughout: steps convert STEPS_PER_CALL at a time, the same playbook."""
    data = yaml.safe_load(playbook_text(STEPS_PER_CALL * 2 + 7))
    sliced = check_schema(data)
    assert sliced.issues == [] and sliced.playbook == msgspec.convert(data, Playbook)
    data["steps"][-1]["timeout_seconds"] = "soon"                   # a bad step in the last slice
    broken = check_schema(data)
    assert [issue.path for issue in broken.issues] == [("steps", STEPS_PER_CALL * 2 + 6, "timeout_seconds")]
    assert broken.playbook is not None and len(broken.playbook.steps) == STEPS_PER_CALL * 2 + 7   # its key dropped


def test_a_step_id_longer_than_a_subject_takes_is_refused_briefly():
    """A step id goes into NATS subjects; one of thousands of characters made the server close the engine's
    connection when the step was scheduled."""
    longest, too_long = "s" + "x" * 127, "s" + "x" * 5000
    assert not [d for d in validate_playbook(f"name: x\nsteps:\n  - {{id: {longest}, action: noop}}\n")
                if d.severity == "error"]
    (found,) = [d for d in validate_playbook(f"name: x\nsteps:\n  - {{id: {too_long}, action: noop}}\n")
                if d.code == "PB202"]
    assert "at most 128" in found.message and len(found.message) < 400


def test_an_error_handlers_action_is_checked_as_a_steps():
    text = yaml_text("""
        name: x
        error_handlers:
          - {category: network, run: {action: shel, args: {command: "true"}}}
          - {category: timeout, run: {action: wait, args: {seconds: -1}}}
        steps:
          - {id: a, name: a, action: noop}
        """)
    found = [(d.code, d.line, d.message) for d in validate_playbook(text) if d.severity == "error"]
    assert [(code, line) for code, line, _ in found] == [("PB206", 3), ("PB107", 4)]
    assert "did you mean 'shell'" in found[0][2] and "'seconds' must be a number >= 0, got -1" in found[1][2]


def test_a_reference_may_index_a_list_as_outputs_from_does() -> None:
    text = yaml_text("""
        name: x
        parameters: [{name: hosts, type: list, default: [web1]}]
        steps:
          - {id: probe, name: Probe, action: noop, args: {outputs: {json: {items: [{id: 3}]}}}}
          - id: report
            name: Report
            action: noop
            when: {type: equals, left: "${steps.probe.json.items[0].id}", right: 3}
            args: {message: "first host ${hosts[0]}"}
          - {id: bad, name: Bad, action: noop, args: {message: "${hosts[first]}"}}
        """)
    assert [(d.code, d.line) for d in validate_playbook(text, "x.yaml") if d.severity == "error"] == [("PB210", 10)]


def test_variables_and_error_handlers_name_only_what_exists() -> None:
    text = yaml_text("""
        name: x
        variables:
          url: "https://${hostt}/health"
        environments:
          prod: {banner: "${tierr}"}
        error_handlers:
          - {category: timeout, run: {action: noop, args: {message: "clearing ${lockk}"}}}
        steps:
          - {id: a, name: A, action: noop, args: {message: "${url} ${banner}"}}
        """)
    found = [(d.code, d.line, d.message.split(" names ")[0])
             for d in validate_playbook(text, "x.yaml", environment="prod") if d.severity == "error"]
    assert found == [("PB207", 3, "${hostt}"), ("PB207", 5, "${tierr}"), ("PB207", 7, "${lockk}")]


@pytest.mark.parametrize("variables, environments, line, circle", [
    ({"a": "${b}", "b": "${a}-x"}, {}, 3, "a -> b -> a"),
    ({"a": "${a}"}, {}, 3, "a -> a"),
    ({"a": {"deep": ["${b}"]}, "b": "${c.x}", "c": "${a}"}, {}, 3, "a -> b -> c -> a"),
    ({"a": "${b}", "b": "fine"}, {"prod": {"b": "${a}"}}, 7, "b -> a -> b"),   # only in production
])
def test_variables_in_a_circle_are_found_before_a_run(variables, environments, line, circle) -> None:
    text = playbook_text_of(variables, environments)
    (found,) = [d for d in validate_playbook(text, "x.yaml") if d.severity == "error"]
    assert (found.code, found.line) == ("PB212", line) and f"in a circle: {circle}" in found.message


def test_a_variable_may_use_a_parameter_of_its_own_name() -> None:
    text = playbook_text_of({"region": "${region}-1"}, {}, parameters=[{"name": "region", "default": "eu"}])
    assert [d for d in validate_playbook(text, "x.yaml") if d.severity == "error"] == []


def playbook_text_of(variables: dict[str, Any], environments: dict[str, Any], **top: Any) -> str:
    step = {"id": "a", "name": "A", "action": "noop", "args": {"message": " ".join(f"${{{v}}}" for v in variables)}}
    return yaml.safe_dump({"name": "x", **top, "variables": variables, "environments": environments,
                           "steps": [step]}, sort_keys=False, default_flow_style=False)


def test_a_yes_read_as_true_where_text_belongs_says_to_quote_it() -> None:
    text = yaml_text("""
        name: x
        steps:
          - {id: on, name: Patch, action: noop}
        """)
    (found,) = [d for d in validate_playbook(text, "x.yaml") if d.severity == "error"]
    assert (found.code, found.line) == ("PB103", 3) and found.message.endswith("as true or false: quote it")


def test_a_file_that_is_one_scalar_is_described_not_quoted() -> None:
    """Whatever was pointed at (a token file, say) is not a playbook, and its text is not repeated back."""
    [found] = [d for d in validate_playbook("pbt_0123456789abcdef_" + "s" * 43, "token") if d.code == "PB002"]
    assert found.message.endswith("the file holds a string of 64 characters")
    assert "pbt_" not in found.message


def test_a_name_is_a_line_of_at_most_200_characters() -> None:
    """Names go on every line of the run list, the audit, the insights and refusals: a 100,000-character name was
    accepted and echoed back in full; a line break or an escape in one breaks every line it is on."""
    long_name = f"name: {'a' * 201}\nsteps:\n  - {{id: a, action: noop, name: ok}}\n"
    [found] = [d for d in validate_playbook(long_name, "long.yaml") if d.code == "PB104"]
    assert (found.line, found.message) == (1, "a name may be 200 characters at most; this one has 201")
    escaped = 'name: "deploy\\x1b[2J"\nsteps:\n  - {id: a, action: noop, name: "two\\nlines"}\n'
    assert [(d.line, d.step_id) for d in validate_playbook(escaped, "e.yaml") if d.code == "PB104"] == [
        (1, None), (3, "a")]
    assert not [d for d in validate_playbook(f"name: {'a' * 200}\nsteps: [{{id: a, action: noop, name: ok}}]\n",
                                             "fine.yaml") if d.severity == "error"]


def test_an_output_the_step_never_has_is_refused_before_the_run_at_every_place_it_is_read():
    """Each passed validation, then failed the step as `configuration` when it ran: `from: stdot` after its
    command had done its work."""
    found = [(d.code, d.line, d.step_id, d.message) for d in validate_playbook(yaml_text("""
        name: outputs
        steps:
          - id: build
            name: Build
            action: shell
            args: {command: make}
            timeout_seconds: 60
            outputs: [{name: image, from: stdot}]
            validations: [{type: contains, left: "${stdot}", right: ok}]
            rollback: [{action: shell, args: {command: "undo ${imag}"}, timeout_seconds: 5}]
          - id: check
            name: Check
            action: noop
            args: {outputs: {healthy: true}}
          - id: ship
            name: Ship
            action: noop
            args: {message: "${steps.build.imag} ${steps.check.healty} ${steps.build.stdout}"}
        """), "o.yaml") if d.code == "PB213"]
    assert found == [
        ("PB213", 8, "build", "'from: stdot' reads 'stdot', which a shell step's outputs never hold (returncode, "
                              "stderr, stdout) — did you mean 'stdout'?"),
        ("PB213", 9, "build", "${stdot} names 'stdot', which is neither a parameter, a variable nor an output of "
                              "this step (image, returncode, stderr, stdout) — did you mean 'stdout'?"),
        ("PB213", 10, "build", "${imag} names 'imag', which is neither a parameter, a variable nor an output of "
                               "this step (image, returncode, stderr, stdout) — did you mean 'image'?"),
        ("PB213", 18, "ship", "${steps.build.imag} reads output 'imag', which step 'build' never has (image, "
                              "returncode, stderr, stdout) — did you mean 'image'?"),
        ("PB213", 18, "ship", "${steps.check.healty} reads output 'healty', which step 'check' never has (healthy) "
                              "— did you mean 'healthy'?"),
    ]


def test_outputs_only_the_run_knows_are_not_guessed_at():
    """A noop whose outputs are a reference, an action the engine is given besides its own, JSON read deeper,
    a breaker's refusal, a parameter read in a validation: nothing to refuse."""
    assert [d for d in validate_playbook(yaml_text("""
        name: outputs
        parameters: [{name: want, default: ok}]
        variables: {given: {a: 1}}
        steps:
          - {id: a, name: A, action: noop, args: {outputs: "${given}"}}
          - {id: b, name: B, action: http_request, args: {url: "https://example.com"},
             outputs: [{name: first, from: "$.items[0]"}, {name: id, from: json.id}],
             validations: [{type: equals, left: "${status_code}", right: 200}, {type: truthy, left: "${want}"}]}
          - {id: c, name: C, action: custom, args: {}}
          - id: d
            name: D
            action: noop
            args: {message: "${steps.a.anything} ${steps.b.json.x[0]} ${steps.b.circuit_open} ${steps.c.whatever}"}
        """), "o.yaml", known_actions={"noop", "http_request", "custom"}) if d.severity == "error"] == []


@pytest.mark.parametrize(("written", "key"), [("~", None), ("true", True), ("1.5", 1.5), ("200", 200)])
def test_a_key_that_is_not_text_is_refused_wherever_it_is_written(written, key):
    """A null or boolean key anywhere in args validated, then the start was an internal error (events are JSON:
    'Only dicts with str-like or number-like keys are supported'); a number key was unreachable by ${...}."""
    found = [(d.code, d.line, d.step_id, d.message) for d in validate_playbook(yaml_text(f"""
        name: keys
        variables: {{codes: {{{written}: ok}}}}
        steps:
          - id: a
            name: A
            action: noop
            args: {{outputs: {{{written}: x}}}}
        """), "k.yaml") if d.severity == "error"]
    assert found == [
        ("PB103", 2, None, f"key {key!r} in 'variables.codes' must be a string (quote it)"),
        ("PB103", 7, "a", f"key {key!r} in 'args.outputs' must be a string (quote it)")]


def test_a_key_the_schema_already_refuses_is_told_once():
    assert [d.message for d in validate_playbook("name: k\n1: x\nsteps: [{id: a, name: A, action: noop}]\n")
            if d.severity == "error"] == ["key 1 in the playbook must be a string (quote it)"]


def test_a_date_is_the_text_written_and_binary_is_refused():
    """YAML 1.1 made `2024-01-01` a date: a whole-value ${...} of it failed the step ('must be a string, got
    date'), and its type changed once the run's events (JSON) carried it. !!binary made bytes the same way."""
    loaded = load_playbook(yaml_text("""
        name: dates
        version: 2024-01-01
        variables: {released: 2024-01-01, at: 2001-12-14t21:59:43.10-05:00}
        steps: [{id: a, name: A, action: noop, args: {message: "${released}"}}]
        """))
    assert loaded.playbook.version == "2024-01-01"
    assert loaded.playbook.variables == {"released": "2024-01-01", "at": "2001-12-14t21:59:43.10-05:00"}
    for tag in ("!!binary aGVsbG8=", "!!timestamp 2024-01-01"):
        [found] = validate_playbook(f"name: t\nsteps: [{{id: a, name: A, action: noop, args: {{message: {tag}}}}}]\n")
        assert (found.code, found.line) == ("PB001", 2) and "is not allowed" in found.message, found


def test_a_regular_expression_re2_cannot_run_is_refused_where_it_is_written_and_one_that_backtracks_is_not():
    """A `matches`, a parameter's pattern and an error handler's pattern run on RE2, in time linear in the text:
    `(a+)+$`, which froze the whole process under Python's `re`, is fine; a backreference or lookaround RE2 has no
    syntax for is PB104 at its own line, naming it."""
    found = [(d.code, d.line, d.message) for d in validate_playbook(yaml_text("""
        name: regexes
        parameters: [{name: tag, pattern: "(a+)+$", default: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!}]
        error_handlers: [{pattern: "(x|xx)*y", run: {action: noop}}, {pattern: "(?<!no )lock", run: {action: noop}}]
        steps:
          - {id: a, name: A, action: noop, when: {type: matches, left: "${tag}", right: "(\\\\w+)-\\\\1"}}
          - {id: b, name: B, action: noop, validations: [{type: matches, left: x, right: "a{1001}"}]}
          - {id: c, name: C, action: noop, when: {type: matches, left: "${tag}", right: "(.*)*x"}}
        """), "r.yaml") if d.severity == "error"]
    assert [(code, line) for code, line, _ in found] == [("PB307", 2), ("PB104", 3), ("PB104", 5), ("PB104", 6)], found
    assert "lookahead or lookbehind" in found[1][2] and "backreferences" in found[2][2], found
    assert "at most 1000 times" in found[3][2], found


def test_a_shell_rollback_action_or_remediation_without_a_timeout_is_warned_of():
    """A hung undo holds the rollback (no skipping one action), a hung remediation the step: PB502 at each."""
    text = ("name: x\n"
            "steps:\n"
            "  - id: a\n"
            "    name: A\n"
            "    action: noop\n"
            "    rollback:\n"
            "      - {action: shell, args: {argv: [undo]}}\n"
            "      - {action: shell, args: {argv: [undo]}, timeout_seconds: 30}\n"
            "error_handlers:\n"
            "  - run: {action: shell, args: {argv: [fix]}}\n")
    assert [(d.code, d.field, d.line) for d in validate_playbook(text) if d.code == "PB502"] == [
        ("PB502", "steps[0].rollback[0].timeout_seconds", 7),
        ("PB502", "error_handlers[0].run.timeout_seconds", 10)]
