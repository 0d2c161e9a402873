"""`playbook completion bash|zsh`: shell completion written from the CLI's own argparse parser.

Commands, their options, the choices of options and arguments, and files where a playbook
file goes: every word comes from the parser, so completion cannot drift from the CLI.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

@dataclass
class Option:
    flags: list[str]
    help: str
    takes_value: bool
    metavar: str
    choices: list[str]
    is_file: bool


@dataclass
class Command:
    name: str
    help: str
    options: list[Option] = field(default_factory=list)
    positionals: list[Option] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)


def commands_of(parser: argparse.ArgumentParser) -> list[Command]:
    """The parser's subcommands, with what each takes."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return []
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    found = []
    for name, child in sub.choices.items():
        command = Command(name, helps.get(name, ""), subcommands=commands_of(child))
        for action in child._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            option = Option(flags=list(action.option_strings), help=action.help or "",
                            takes_value=action.nargs != 0, metavar=str(action.metavar or action.dest).lower(),
                            choices=[str(c) for c in action.choices or ()],
                            is_file=action.dest == "file" or action.metavar == "FILE")
            (command.options if action.option_strings else command.positionals).append(option)
        found.append(command)
    return found


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    commands = commands_of(parser)
    return _bash(parser.prog, commands) if shell == "bash" else _zsh(parser.prog, commands)


# -- bash ---------------------------------------------------------------------------------

def _bash(prog: str, commands: list[Command]) -> str:
    func = f"_{prog}_complete"
    cases = "\n".join(_bash_case(command) for command in commands)
    return f"""# bash completion for {prog}, written by `{prog} completion bash`:
#   source <({prog} completion bash)      (or save it under ~/.local/share/bash-completion/completions/{prog})
{func}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="" sub="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd="${{COMP_WORDS[i]}}"; elif [[ -z $sub ]]; then sub="${{COMP_WORDS[i]}}"; fi ;;
        esac
    done
    COMPREPLY=()
    case "$cmd" in
        "") COMPREPLY=($(compgen -W "{' '.join(c.name for c in commands)}" -- "$cur")) ;;
{cases}
    esac
}}
complete -o default -F {func} {prog}
"""


def _bash_case(command: Command) -> str:
    options = command.options + [o for s in command.subcommands for o in s.options]
    value_cases = "".join(f"\n                {'|'.join(o.flags)}) {_bash_values(o)}; return ;;"
                          for o in options if o.takes_value)
    flags = " ".join(flag for o in options for flag in o.flags)
    if command.subcommands:
        words = f'compgen -W "{" ".join(s.name for s in command.subcommands)}" -- "$cur"'
        positional = f'[[ -z $sub ]] && COMPREPLY=($({words}))'
    else:
        positional = _bash_values(command.positionals[0]) if command.positionals else ":"
    return f"""        {command.name})
            case "$prev" in{value_cases}
            esac
            if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "{flags}" -- "$cur")); else {positional}; fi ;;"""


def _bash_values(option: Option) -> str:
    if option.choices:
        return f'COMPREPLY=($(compgen -W "{" ".join(option.choices)}" -- "$cur"))'
    if option.is_file:
        return 'COMPREPLY=($(compgen -f -- "$cur"))'
    return ":"


# -- zsh ----------------------------------------------------------------------------------

def _zsh(prog: str, commands: list[Command]) -> str:
    described = "\n".join(f"        {_quote(c.name + ':' + _plain(c.help))}" for c in commands)
    cases = "\n".join(f"        {c.name}) {_zsh_arguments(c)} ;;" for c in commands)
    return f"""#compdef {prog}
# zsh completion for {prog}, written by `{prog} completion zsh`:
#   source <({prog} completion zsh)       (or save it as _{prog} in a directory of $fpath)
_{prog}() {{
    local -a commands
    commands=(
{described}
    )
    if (( CURRENT == 2 )); then
        _describe -t commands '{prog} command' commands
        return
    fi
    local cmd=$words[2]
    shift words
    (( CURRENT-- ))
    case $cmd in
{cases}
    esac
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _{prog} "$@"
else
    compdef _{prog} {prog}
fi
"""


def _zsh_arguments(command: Command) -> str:
    specs = [_zsh_option(o) for o in command.options]
    if command.subcommands:
        names = " ".join(s.name for s in command.subcommands)
        specs.append(_quote(f"1:action:({names})"))
        specs += [_zsh_option(o) for s in command.subcommands for o in s.options]
    specs += [_quote(f"{i}:{_plain(p.metavar)}:{_zsh_action(p)}")
              for i, p in enumerate(command.positionals, start=1)]
    return "_arguments -s " + " ".join(dict.fromkeys(specs))


def _zsh_option(option: Option) -> str:
    value = f":{_plain(option.metavar)}:{_zsh_action(option)}" if option.takes_value else ""
    flags = option.flags
    if len(flags) == 1:
        return _quote(f"{flags[0]}[{_plain(option.help)}]{value}")
    exclusive = f"({' '.join(flags)})"
    return _quote(exclusive) + "{" + ",".join(flags) + "}" + _quote(f"[{_plain(option.help)}]{value}")


def _zsh_action(option: Option) -> str:
    if option.choices:
        return f"({' '.join(option.choices)})"
    return "_files" if option.is_file else " "


def _plain(text: str) -> str:
    """Help text that zsh's specs cannot misread: no brackets, colons or backslashes."""
    return (text.replace("[", "(").replace("]", ")").replace(":", " -").replace("\\", "/")
            .replace("`", "").replace("$", ""))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
