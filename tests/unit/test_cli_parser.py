"""The CLI builds only the arguments of the command it runs; what it reads is what the whole parser reads."""
from __future__ import annotations

import argparse

import pytest

from ui.cli.main import parser


def commands(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def described(cmd: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    """Every argument of a command as argparse holds it, sub-commands (`token create`) included."""
    found: list[tuple[object, ...]] = []
    for action in cmd._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(name, *described(child)) for name, child in action.choices.items()]
        else:
            found.append((tuple(action.option_strings), action.dest, action.nargs, action.default, action.type,
                          action.choices, action.required, action.help, action.metavar))
    return found


EVERY = commands(parser())


@pytest.mark.parametrize("name", sorted(EVERY))
def test_a_command_built_alone_has_the_arguments_it_has_among_all(name: str) -> None:
    alone = commands(parser(only=name))
    assert list(alone) == [name]
    assert described(alone[name]) == described(EVERY[name])


@pytest.mark.parametrize("argv", [["run", "book.yaml", "-p", "a=1", "--env", "prod", "--as", "ana", "--detach"],
                                  ["approve", "run-1", "deploy", "--comment", "ok"],
                                  ["token", "create", "ci", "--owner", "bot", "--grant", "operator"],
                                  ["logs", "run-1", "step", "--attempt", "2", "--follow"]])
def test_what_a_command_reads_does_not_depend_on_the_others_being_built(argv: list[str]) -> None:
    assert read(parser(only=argv[0]), argv) == read(parser(), argv)


def read(root: argparse.ArgumentParser, argv: list[str]) -> dict[str, object]:
    """The arguments read, the handler named by what it runs (`token`'s are made anew with each parser)."""
    args = vars(root.parse_args(argv))
    handler = args.pop("handler")
    return {**args, "handler": (getattr(handler, "module", None), getattr(handler, "name", handler))}


def test_a_word_that_names_no_command_gets_the_error_listing_every_command(capsys: pytest.CaptureFixture[str]
                                                                          ) -> None:
    assert set(commands(parser(only="rnu"))) == set(EVERY)
    with pytest.raises(SystemExit):
        parser(only="rnu").parse_args(["rnu"])
    assert "invalid choice: 'rnu'" in capsys.readouterr().err
