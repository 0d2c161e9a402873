"""What past runs recommend, as diagnostics at the lines they concern: `playbook validate --insights`."""
from __future__ import annotations

from collections.abc import Iterable

from events.insights import Recommendation
from services.playbook.diagnostics import Diagnostic
from services.playbook.yaml_source import YamlSyntaxError, load_yaml


def advice(text: str, source: str, recommendations: Iterable[Recommendation]) -> list[Diagnostic]:
    """One info (PB601) per recommendation: at its step's line when the file has that step, else at the top."""
    recommendations = list(recommendations)
    if not recommendations:
        return []
    try:
        doc = load_yaml(text)
    except YamlSyntaxError:
        doc = None
    steps = doc.data.get("steps") if doc is not None and isinstance(doc.data, dict) else None
    index = {step["id"]: i for i, step in enumerate(steps if isinstance(steps, list) else [])
             if isinstance(step, dict) and isinstance(step.get("id"), str)}
    wanted = [r.step for r in recommendations if r.step in index]
    lines = dict(zip(wanted, doc.locate_all([(("steps", index[s]), False) for s in wanted]))) if doc else {}
    return [Diagnostic(code="PB601", severity="info", file=source, message=_sentence(r),
                       line=lines[r.step].line if r.step in lines else None,
                       column=lines[r.step].column if r.step in lines else None,
                       step_id=r.step if r.step in index else None)
            for r in recommendations]


def playbook_name(text: str) -> str | None:
    """The playbook's `name`, read even from a file with errors, to ask what its past runs taught."""
    try:
        data = load_yaml(text).data
    except YamlSyntaxError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _sentence(recommendation: Recommendation) -> str:
    evidence = recommendation.evidence
    suggestion = ", ".join(f"{key}: {value}" for key, value in recommendation.suggestion.items())
    return (recommendation.message + (f" (suggested: {suggestion})" if suggestion else "")
            + f" [{evidence.count} observation(s), confidence {evidence.confidence:.0%}]")
