"""big: validating playbooks of thousands of steps, against plain YAML loading of the same text.

Generator first; the benchmark follows.
"""
from __future__ import annotations

import random

GROUP_EVERY, GROUP_SIZE = 20, 5  # in each block of 20 steps, 5 run as one parallel group


def playbook_text(steps: int, seed: int = 0, *, shell: bool = True) -> str:
    """A valid playbook of `steps` steps in the mix operators write, as YAML text.

    Shell, http and noop steps; parallel groups; depends_on lists that reach far back;
    `when` conditions, validators, retries; `${steps.<id>...}` references to steps near
    and far upstream. Same `steps` and `seed`, same text. Without `shell`, the shell steps
    are noop steps (the shell analysis is left out of what is measured).
    """
    rng = random.Random(seed)
    lines = [
        "name: bench-big",
        "description: a generated playbook of many steps",
        "parameters:",
        "  - {name: base_url, default: 'http://127.0.0.1:8080'}",
        "  - {name: service, default: checkout}",
        "  - {name: replicas, type: integer, default: 2}",
        "variables:",
        "  service_url: ${base_url}/services/${service}",
        "steps:",
    ]
    ids: list[str] = []
    unit: list[str] = []  # ids of the unit before the current one (one step, or a whole group)
    start = 0  # index of the current unit's first step: every step before it is upstream of it
    for i in range(steps):
        in_group = GROUP_EVERY - GROUP_SIZE <= i % GROUP_EVERY
        first_in_group = i % GROUP_EVERY == GROUP_EVERY - GROUP_SIZE
        if not in_group or first_in_group:
            unit = ids[start:i]
            start = i
        kind = ("shell", "shell", "shell", "shell", "shell", "shell", "http", "http", "http", "noop")[i % 10]
        kind = kind if shell or kind != "shell" else "noop"
        step_id = f"{kind}_{i}"
        ids.append(step_id)
        lines += [f"  - id: {step_id}", f"    name: {kind} step number {i}", f"    action: "
                  f"{'http_request' if kind == 'http' else kind}"]
        earlier = _earlier(rng, ids, start)
        if kind == "shell":
            use = f" --from ${{steps.{earlier}.stdout}}" if earlier and rng.random() < 0.4 else ""
            lines += ["    args:", f"      command: echo deploy ${{service}} part {i}{use} && sleep 0",
                      "    timeout_seconds: 30"]
        elif kind == "http":
            lines += ["    args:", f"      url: ${{service_url}}/items/{i}", "      method: GET",
                      "    timeout_seconds: 10"]
        if in_group:
            lines.append(f"    parallel_group: wave_{i // GROUP_EVERY}")
        elif unit and i % 8 == 3:
            extra = [ids[rng.randrange(start)]] if start else []
            lines.append(f"    depends_on: [{', '.join(dict.fromkeys(unit + extra))}]")
        if earlier and i % 7 == 2:
            lines.append(f"    when: ${{steps.{earlier}.ok}}")
        elif earlier and i % 7 == 5:
            lines += ["    when:", "      type: equals", f"      left: ${{steps.{earlier}.status_code}}",
                      "      right: 200"]
        if i % 9 == 4:
            lines += ["    validators:", "      - {type: port_open, port: 8080}",
                      "      - {type: http_status, url: '${service_url}/health'}"]
        if i % 11 == 6:
            lines += ["    retry: {max_attempts: 3, base_delay: 0.5}"]
    return "\n".join(lines) + "\n"


def _earlier(rng: random.Random, ids: list[str], start: int) -> str | None:
    """A step sure to have run before the current unit: mostly a near one, sometimes one far back."""
    if not start:
        return None
    low = 0 if rng.random() < 0.2 else max(0, start - 20)
    return ids[rng.randrange(low, start)]
