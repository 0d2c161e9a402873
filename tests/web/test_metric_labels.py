"""/metrics keeps a bounded number of label values: whoever writes a playbook cannot grow every scrape without
end with its names and step ids; what is past the bound is added up under `(other)`, never lost nor twice."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import noop, playbook_yaml, wait_for_end
from tests.web.test_api import Api, api, runs_projected  # noqa: F401 - api is a fixture
from ui.web import bounded_labels

pytestmark = pytest.mark.integration


async def test_names_past_the_bound_are_counted_under_other(api: Api, engine, web_server, monkeypatch) -> None:
    monkeypatch.setattr(bounded_labels, "MAX_PLAYBOOKS", 2)
    monkeypatch.setattr(bounded_labels, "MAX_STEPS", 4)
    monkeypatch.setattr(bounded_labels, "MAX_STEPS_PER_PLAYBOOK", 3)
    playbooks = [playbook_yaml([noop(f"s{n}") for n in range(1, 6)], name="pb-a"),
                 playbook_yaml([noop("only")], name="(other)"),       # a name that is the bound's own
                 playbook_yaml([noop("only")], name="pb-b"),
                 playbook_yaml([noop("only")], name="pb-c")]
    run_ids = []
    for playbook in playbooks:                                       # one after the other: first seen, first named
        run_ids.append(await api.start(playbook))
        await wait_for_end(engine, run_ids[-1])
    await runs_projected(web_server, engine, *run_ids)

    answer = await api.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(answer.body)}
    attempts = [s for s in families["playbook_step_attempts"].samples if s.labels["outcome"] == "succeeded"]
    assert {(s.labels["playbook"], s.labels["step"]): s.value for s in attempts} == {
        ("pb-a", "s1"): 1, ("pb-a", "s2"): 1, ("pb-a", "s3"): 1, ("pb-a", "(other)"): 2,
        ("pb-b", "only"): 1, ("(other)", "(other)"): 2}
    started = {s.labels["playbook"]: s.value for s in families["playbook_runs_started"].samples
               if s.name == "playbook_runs_started_total" and s.labels["dry_run"] == "false"}
    assert started == {"pb-a": 1, "pb-b": 1, "(other)": 2}
    for family in families.values():                                 # no label set twice
        keys = [(s.name, tuple(sorted(s.labels.items()))) for s in family.samples]
        assert len(keys) == len(set(keys)), family.name
    assert len((await api.get("/api/metrics")).body["steps"]) == 8  # the dashboard's JSON keeps every one
