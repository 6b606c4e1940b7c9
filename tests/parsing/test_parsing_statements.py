"""LineSplitter and StatementSplitter: when each piece comes out, and that pieces add up."""

from __future__ import annotations

import ast
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parsing_support import CODE_LINES, split

from conveyor_integrations.parsing.statements import LineSplitter, StatementSplitter


def feed_lines(text: str) -> list[tuple[int, str]]:
    """(line number at which each piece came out, piece); flush counts as line -1."""
    s = StatementSplitter()
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(keepends=True)):
        out += [(n, p) for p in s.push(line)]
    out += [(-1, p) for p in s.flush()]
    return out


def test_simple_statement_at_its_newline() -> None:
    s = StatementSplitter()
    assert s.push("x = ") == []
    assert s.push("1") == []
    assert s.push("\ny") == ["x = 1\n"]
    assert s.push(" = 2\n") == ["y = 2\n"]
    assert s.flush() == []


def test_compound_at_dedent_and_continuations() -> None:
    code = ("if a:\n    b = 1\nelif c:\n    b = 2\nelse:\n    b = 3\n"
            "try:\n    f()\nexcept E:\n    pass\nfinally:\n    g()\n"
            "for i in x:\n    pass\nelse:\n    h()\n"
            "z = 0\n")
    got = feed_lines(code)
    assert [p for _, p in got] == [
        "if a:\n    b = 1\nelif c:\n    b = 2\nelse:\n    b = 3\n",
        "try:\n    f()\nexcept E:\n    pass\nfinally:\n    g()\n",
        "for i in x:\n    pass\nelse:\n    h()\n",
        "z = 0\n",
    ]
    assert [n for n, _ in got] == [6, 12, 16, 16]


def test_decorators_def_class_async() -> None:
    code = ("@dec\n@dec2(1)\ndef f():\n    return 1\n"
            "class A:\n    x = 1\n\n    def m(self):\n        pass\n"
            "async def g():\n    await h()\n"
            "print(f())\n")
    pieces = [p for _, p in feed_lines(code)]
    assert pieces == ["@dec\n@dec2(1)\ndef f():\n    return 1\n",
                      "class A:\n    x = 1\n\n    def m(self):\n        pass\n",
                      "async def g():\n    await h()\n", "print(f())\n"]


def test_multiline_brackets_and_backslash() -> None:
    got = feed_lines("x = [\n1,\n  2]\ny = 1 + \\\n 2\nz = {'a': (\n3)}\n")
    assert got == [(2, "x = [\n1,\n  2]\n"), (4, "y = 1 + \\\n 2\n"), (6, "z = {'a': (\n3)}\n")]


def test_triple_quoted_strings_with_column0_lines() -> None:
    code = ('def f():\n    s = """\nnot = code\n"""\n    return s\n'
            "t = '''a\n# not a comment\n'''\n"
            'u = "a#b"  # comment with ( bracket\n')
    got = feed_lines(code)
    assert [p for _, p in got] == ['def f():\n    s = """\nnot = code\n"""\n    return s\n',
                                   "t = '''a\n# not a comment\n'''\n",
                                   'u = "a#b"  # comment with ( bracket\n']
    assert [n for n, _ in got] == [5, 7, 8]


def test_comments_and_blank_lines_attach_to_next_statement() -> None:
    code = "# head\n\nx = 1\nif x:\n    y = 2\n    # inside\n\n# before z\nz = 3\n# tail\n"
    pieces = [p for _, p in feed_lines(code)]
    assert pieces == ["# head\n\nx = 1\n", "if x:\n    y = 2\n    # inside\n",
                      "\n# before z\nz = 3\n", "# tail\n"]


def test_one_line_compound_waits_for_next_line() -> None:
    s = StatementSplitter()
    assert s.push("if x: y = 1\n") == []
    assert s.push("else: y = 2\n") == []
    assert s.push("z = 3\n") == ["if x: y = 1\nelse: y = 2\n", "z = 3\n"]


def test_match_statement_and_match_as_name() -> None:
    code = "match = 1\nmatch x:\n    case 1:\n        pass\nprint(match)\n"
    pieces = [p for _, p in feed_lines(code)]
    assert pieces == ["match = 1\n", "match x:\n    case 1:\n        pass\n", "print(match)\n"]


def test_unparsable_text_comes_out_once_at_flush() -> None:
    s = StatementSplitter()
    assert s.push("x = 1\n") == ["x = 1\n"]
    assert s.push("y = = 2\nz = 3\n") == []
    assert s.push("w = 4\n" * 50) == []
    assert s.flush() == ["y = = 2\nz = 3\n" + "w = 4\n" * 50]


def test_flush_without_final_newline() -> None:
    s = StatementSplitter()
    assert s.push("for i in x:\n    pass\nprint(1)") == []
    assert s.flush() == ["for i in x:\n    pass\n", "print(1)"]


def test_line_splitter() -> None:
    s = LineSplitter()
    assert s.push("a") == []
    assert s.push("b\nc\n\nd") == ["ab\n", "c\n", "\n"]
    assert s.flush() == ["d"]
    assert s.flush() == []


def test_long_statement_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20k-line list literal is compiled once, not once per line."""
    import builtins

    from conveyor_integrations.parsing import statements

    calls = []
    real = builtins.compile

    def counting(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(statements, "compile", counting, raising=False)
    s = StatementSplitter()
    body = "x = [\n" + "    1,\n" * 20000 + "]\n"
    out = []
    for i in range(0, len(body), 4):
        out += s.push(body[i:i + 4])
    assert out == [body]
    assert len(calls) <= 2


@pytest.mark.parametrize("unit", ["line", "statement"])
@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(code=st.lists(st.sampled_from(CODE_LINES + ["x = (\n", ")\n", "  y\n", "\\\n"]),
                     max_size=20).map("".join), data=st.data())
def test_pieces_add_up_and_parse(unit: str, code: str, data: st.DataObject) -> None:
    splitter = StatementSplitter() if unit == "statement" else LineSplitter()
    cuts = data.draw(st.lists(st.integers(0, len(code)), max_size=10))
    pieces: list[str] = []
    for part in split(code, cuts):
        pieces += splitter.push(part)
    pieces += splitter.flush()
    assert "".join(pieces) == code
    assert all(pieces)
    if unit == "statement":
        for p in pieces[:-1]:
            ast.parse(p)
        # the same pieces whatever the chunking
        whole = StatementSplitter()
        assert whole.push(code) + whole.flush() == pieces
