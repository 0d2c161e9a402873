"""Fork bombs (PB409): functions that start copies of themselves, endless loops that spawn processes."""
from __future__ import annotations

from collections.abc import Iterator

from services.playbook.shell.model import Code, Report, literal
from services.playbook.shell.syntax import Compound, Pipeline, Sequence, Simple


def fork_bombs(sequence: Sequence, code: Code, report: Report) -> None:
    """Functions that start two copies of themselves, loops that never end and start processes in the background."""
    for compound in _compounds(sequence):
        if compound.kind == "function" and compound.name and _multiplies(compound.bodies[0], compound.name):
            report.add("PB409", code.place(compound.start),
                       f"fork bomb: function '{compound.name}' starts copies of itself in the background or in a "
                       "pipeline, which multiplies processes until the host stops responding; remove it")
        elif _endless(compound) and _spawns(compound.bodies[-1]):
            report.add("PB409", code.place(compound.start),
                       "fork bomb: a loop that never ends starts a background process on every turn without waiting "
                       "for it, which multiplies processes until the host stops responding; add 'wait', or bound "
                       "the loop")


def _compounds(sequence: Sequence) -> Iterator[Compound]:
    for pipeline in sequence.pipelines:
        for command in pipeline.commands:
            if isinstance(command, Compound):
                yield command
                for body in command.bodies:
                    yield from _compounds(body)


def _simples(sequence: Sequence) -> Iterator[tuple[Pipeline, Simple]]:
    for pipeline in sequence.pipelines:
        for command in pipeline.commands:
            if isinstance(command, Simple):
                yield pipeline, command
            else:
                for body in command.bodies:
                    yield from _simples(body)


def _multiplies(body: Sequence, name: str) -> bool:
    """The function starts itself in the background, or twice in one pipeline (`f | f`)."""
    per_pipeline: dict[int, int] = {}
    for pipeline, simple in _simples(body):
        if simple.words and literal(simple.words[0]) == name:
            if pipeline.background:
                return True
            per_pipeline[id(pipeline)] = per_pipeline.get(id(pipeline), 0) + 1
    return any(count >= 2 for count in per_pipeline.values())


def _endless(compound: Compound) -> bool:
    if compound.kind == "for((":
        clauses = compound.name.split(";")
        return len(clauses) == 3 and not clauses[1].strip()
    if compound.kind not in ("while", "until") or not compound.bodies:
        return False
    condition = compound.bodies[0].pipelines
    if len(condition) != 1 or len(condition[0].commands) != 1:
        return False
    command = condition[0].commands[0]
    if isinstance(command, Compound):
        return command.kind == "arith" and command.name.strip() not in ("", "0") and compound.kind == "while" and (
            command.name.strip().isdigit())
    words = [literal(w) for w in command.words]
    forever = {"while": [["true"], [":"], ["[", "1", "]"], ["test", "1"]], "until": [["false"]]}
    return words in forever[compound.kind] and not condition[0].negated


def _spawns(body: Sequence) -> bool:
    background = any(pipeline.background for pipeline, _ in _simples(body))
    waits = any(simple.words and literal(simple.words[0]) in ("wait", "sleep") for _, simple in _simples(body))
    return background and not waits
