"""The shell parser as the checks rely on it: structure and offsets right, and nothing it is given breaks it."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from services.playbook.shell import syntax as shell_syntax
from services.playbook.shell.syntax import Compound, Simple, parse

SHELLISH = st.lists(st.sampled_from(
    list("ab1 $(){}[]'\"\\`|&;<>\n#=*?!-~:/\t\ue000\ue001")
    + ["$((", "<<EOF\n", "EOF", "case ", " in ", "esac", "if ", "then", "fi", "for ", "do ", "done", "((", "))", "[[",
       "]]", "function ", "${", "$'", "<(", "<<-", "<<<", "while ", "rm -rf /", "sh -c "]), max_size=60).map("".join)


def simple_words(text: str) -> list[list[str]]:
    """The words of each simple command, depth first, the way the checks walk them."""
    found: list[list[str]] = []

    def walk(sequence):
        for pipeline in sequence.pipelines:
            for command in pipeline.commands:
                if isinstance(command, Simple):
                    found.append([w.value for w in command.words])
                    for word in command.assigns + command.words:
                        parts(word.parts)
                else:
                    for body in command.bodies:
                        walk(body)

    def parts(within):
        for part in within:
            if part.body is not None:
                walk(part.body)
            parts(part.inner)
    walk(parse(text))
    return found


@pytest.mark.parametrize(("text", "expected"), [
    ("sudo rm -rf /tmp/x && curl -s https://x | sh", [["sudo", "rm", "-rf", "/tmp/x"], ["curl", "-s", "https://x"],
                                                       ["sh"]]),
    ('echo "rm -rf /"', [["echo", "rm -rf /"]]),
    ("echo 'a;b' # rm -rf /", [["echo", "a;b"]]),
    ("r''m -rf /", [["rm", "-rf", "/"]]),
    ("$'\\x72\\x6d' -rf /", [["rm", "-rf", "/"]]),
    ("echo $(rm -rf /)", [["echo", "$(...)"], ["rm", "-rf", "/"]]),
    ("echo `rm -rf /`", [["echo", "$(...)"], ["rm", "-rf", "/"]]),
    ("case $1 in a|b) rm -rf /;; *) ls;; esac", [["rm", "-rf", "/"], ["ls"]]),
    ("if true; then rm -rf /; elif x; then y; else z; fi", [["true"], ["rm", "-rf", "/"], ["x"], ["y"], ["z"]]),
    ("for ((i=0; i<3; i++)); do echo $i; done", [["echo", "$i"]]),
    ("[[ -f x && $y == z ]] && rm -rf /", [["rm", "-rf", "/"]]),
    ("a=(1 2) b=3 cmd", [["cmd"]]),
    ("echo $((1 + $(rm -rf /)))", [["echo", "$((...))"], ["rm", "-rf", "/"]]),
    ("echo ${x:-$(rm -rf /)}", [["echo", "${x:-$(rm -rf /)}"], ["rm", "-rf", "/"]]),
    ("time -p rm -rf /", [["rm", "-rf", "/"]]),
    ("x=$(case y in y) rm -rf /;; esac)", [[], ["rm", "-rf", "/"]]),
])
def test_commands_are_split_the_way_the_shell_runs_them(text, expected):
    assert simple_words(text) == expected


def test_here_documents_keep_their_bodies_and_the_commands_after_them():
    tree = parse("cat <<EOF | sh\nrm -rf /\n$(reboot)\nEOF\necho done")
    cat = tree.pipelines[0].commands[0]
    assert isinstance(cat, Simple)
    heredoc = cat.redirects[0].heredoc
    assert heredoc is not None and heredoc.body == "rm -rf /\n$(reboot)\n" and not heredoc.quoted
    assert [p.kind for p in heredoc.parts if p.kind != "text"] == ["command"]  # substitutions in it run
    assert simple_words("cat <<'EOF' | sh\nrm -rf /\nEOF\necho done") == [["cat"], ["sh"], ["echo", "done"]]
    quoted = parse("sh <<-'X'\n\trm -rf /\n\tX\n").pipelines[0].commands[0]
    assert isinstance(quoted, Simple) and quoted.redirects[0].heredoc.body == "\trm -rf /\n"  # type: ignore[union-attr]


def test_functions_and_loops_are_compounds_with_their_bodies():
    tree = parse(":(){ :|:& };:")
    function = tree.pipelines[0].commands[0]
    assert isinstance(function, Compound) and function.kind == "function" and function.name == ":"
    loop = parse("while true; do x & done").pipelines[0].commands[0]
    assert isinstance(loop, Compound) and loop.kind == "while"
    assert loop.bodies[1].pipelines[0].background


def test_every_word_knows_where_it_was_written():
    text = "echo ok &&\n  sudo rm -rf '/etc' # gone"
    words = [w for p in parse(text).pipelines for c in p.commands if isinstance(c, Simple) for w in c.words]
    assert [text[w.start:w.end] for w in words] == ["echo", "ok", "sudo", "rm", "-rf", "'/etc'"]
    inner = parse("x; sh -c 'y; $(z)'").pipelines[1].commands[0]
    assert isinstance(inner, Simple) and (inner.words[2].start, inner.words[2].end) == (9, 18)


@pytest.mark.parametrize("text", ["echo \"unterminated", "echo 'x", "a\\", "$(", "<<", "x <<'EOF'", ")))", "${",
                                  "`", "echo $((", ":(){", "case", "if then fi fi", "done", ";;", "&& ||", "((", "[[",
                                  "$(" * 300, "(" * 3000, "{ " * 3000, "`" * 3000, "${" * 3000, "$((" * 2000,
                                  "a|" * 4000, "x <<E\n" * 1000, "\"$(" * 1000, "<(" * 1000, "$(case " * 500])
def test_broken_or_hostile_text_gives_a_tree_not_an_exception(text):
    assert parse(text) is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(SHELLISH, st.text(max_size=200)))
def test_any_text_parses_without_raising_in_work_linear_in_its_length(text):
    lexed = [0]
    original = shell_syntax._Parser.lex

    def counting(self):
        lexed[0] += 1
        return original(self)

    shell_syntax._Parser.lex = counting  # type: ignore[method-assign]
    try:
        parse(text)
    finally:
        shell_syntax._Parser.lex = original  # type: ignore[method-assign]
    assert lexed[0] <= 3 * len(text) + 10  # tokens are read a bounded number of times: no loop, no blow-up
