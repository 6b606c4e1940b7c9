"""The estimate: each mode moves the recorded tool runs to where it would have started them."""

from __future__ import annotations

import pytest

from conveyor_integrations.analyze.estimate import estimate_run
from conveyor_integrations.analyze.model import RecordedRun, RecordedTool, RecordedTurn
from conveyor_integrations.analyze.strategy import Strategy, strategies_of_tools
from conveyor_integrations.partial import partial_tool


def _text_chunks(text: str, start: float, per_char: float) -> list[tuple[float, str]]:
    """One chunk per character, the k-th arriving at ``start + (k + 1) * per_char``."""
    return [(start + (k + 1) * per_char, ch) for k, ch in enumerate(text)]


CODE_CALL = ('<tool_call>{"name": "run", "arguments": {"code": '
             '"a = 1\\nb = 2\\nprint(a + b)\\n"}}</tool_call>')


def test_stream_pieces_run_as_each_line_is_final() -> None:
    chunks = _text_chunks(CODE_CALL, 0.0, 0.01)          # 100 chars/s
    end = chunks[-1][0]
    turn = RecordedTurn(0.0, end, chunks=chunks, tool_format="hermes",
                        tools=[RecordedTool("run", end, end + 2.6)])
    est = estimate_run(RecordedRun("r", "chatlog", [turn]),
                       {"run": Strategy("stream", ("code",), "line")})
    (call,) = est.turns[0].calls
    assert call.pieces == 3 and call.tool_s == pytest.approx(2.6)
    # lines of 6, 6 and 13 characters: 0.624 s, 0.624 s, 1.352 s of the 2.6 s
    text = CODE_CALL
    finals = [0.01 * (text.index("\\n", text.index("code")) + 2),
              0.01 * (text.index("\\n", text.index("b = 2")) + 2),
              0.01 * (text.index("\\n", text.index("print")) + 2)]
    f = 0.0
    for at, w in zip(finals, (0.624, 0.624, 1.352)):
        f = max(at, f) + w
    assert call.ends["partial"] == pytest.approx(max(f, call.done), abs=0.011)
    assert call.ends["complete_call"] == pytest.approx(call.done + 2.6)
    assert call.ends["bound"] == pytest.approx(call.began + 2.6)
    assert est.total("bound") <= est.total("partial") <= est.total("complete_call") \
        <= est.recorded_s


def test_start_on_waits_for_its_fields_and_complete_call_for_the_call() -> None:
    text = ('<tool_call>{"name": "search", "arguments": {"query": "paris", '
            '"note": "a long note that the model writes after the query"}}</tool_call>')
    chunks = _text_chunks(text, 1.0, 0.02)
    end = chunks[-1][0]
    turn = RecordedTurn(1.0, end, chunks=chunks, tool_format="hermes",
                        tools=[RecordedTool("search", end + 0.05, end + 1.05)])
    run = RecordedRun("r", "chatlog", [turn])
    note = '"a long note that the model writes after the query"'
    known = Strategy("start_on", ("query",), defaults=(("note", note),))
    est = estimate_run(run, {"search": known})
    (call,) = est.turns[0].calls
    query_final = 1.0 + 0.02 * (text.index('"paris"') + len('"paris"'))
    assert call.ends["partial"] == pytest.approx(query_final + 1.0, abs=0.021)
    # recorded: 50 ms of framework gap after decoding, then 1 s of tool
    assert est.saved("complete_call") == pytest.approx(end + 1.05 - (call.done + 1.0))
    assert est.saved("partial") > est.saved("complete_call")
    # another field at a value that is not its default (or defaults unknown): the early run
    # is void, the library runs the tool again on the complete call
    for other in (Strategy("start_on", ("query",)),
                  Strategy("start_on", ("query",), defaults=(("note", '""'),))):
        void = estimate_run(run, {"search": other})
        assert void.total("partial") == void.total("complete_call")
    guessed = estimate_run(run)                             # no strategy: on its complete call
    assert guessed.turns[0].calls[0].strategy == "on its complete call (guessed)"
    assert guessed.total("partial") == guessed.total("complete_call")


def test_final_message_only_is_decoded_at_its_own_rate_or_the_given_one() -> None:
    turn = RecordedTurn(0.0, 4.0, tool_calls=[{"id": "call_9", "name": "fetch",
                                               "arguments": {"urls": ["a", "b", "c", "d"]}}],
                        output_tokens=40,
                        tools=[RecordedTool("fetch", 4.0, 6.0, call_id="call_9")])
    run = RecordedRun("r", "otlp", [turn])
    own = estimate_run(run, {"fetch": Strategy("items", ("urls",))})
    assert own.turns[0].timed.endswith("tok/s")
    (call,) = own.turns[0].calls
    assert call.call_id == "call_9" and call.pieces == 4
    fast = estimate_run(run, {"fetch": Strategy("items", ("urls",))}, rate=1000.0)
    # at 1000 tok/s the whole message takes 0.04 s: nearly nothing to overlap
    assert fast.saved("partial") < own.saved("partial")
    assert fast.turns[0].timed == "1000 tok/s"


def test_turn_savings_add_up_over_the_run_and_unpaired_runs_stay() -> None:
    t1 = RecordedTurn(0.0, 1.0, tool_calls=[{"id": "a", "name": "f", "arguments": {"x": 1}}],
                      output_tokens=10, tools=[RecordedTool("f", 1.0, 2.0, call_id="a"),
                                               RecordedTool("g", 1.0, 1.5)])
    t2 = RecordedTurn(2.0, 3.0, text="done", tool_format="hermes", output_tokens=2)
    est = estimate_run(RecordedRun("r", "chatlog", [t1, t2]),
                       {"f": Strategy("start_on", ("x",))})
    assert est.recorded_s == 3.0 and len(est.turns[0].calls) == 1
    assert any("answer no call" in n for n in est.notes)
    assert est.total("partial") == pytest.approx(3.0 - est.saved("partial"))
    assert est.turns[1].calls == [] and est.turns[1].ends["partial"] == 3.0


def test_malformed_call_is_noted_and_never_moved() -> None:
    text = '<tool_call>{"name": "f", "arguments": {"x": 1,,}}</tool_call>'
    turn = RecordedTurn(0.0, 1.0, text=text, tool_format="hermes", output_tokens=10,
                        tools=[RecordedTool("f", 1.0, 2.0)])
    est = estimate_run(RecordedRun("r", "chatlog", [turn]), {"f": Strategy("start_on", ("x",))})
    assert est.saved("partial") == 0.0 and est.saved("bound") == 0.0
    assert any("malformed" in n for n in est.notes)


def test_strategies_are_read_off_decorated_tools() -> None:
    from langchain_core.tools import tool

    @partial_tool(start_on=["query"])
    @tool
    def search(query: str, k: int = 3) -> str:
        """Search."""
        return query

    @partial_tool(stream="code", unit="statement", combine="".join)
    def run_python(code: str) -> str:
        return code

    @tool
    def plain(x: int) -> int:
        """Plain."""
        return x

    got = strategies_of_tools([search, run_python, plain])
    assert got["search"] == Strategy("start_on", ("query",), source="tools",
                                     defaults=(("k", "3"),))
    assert got["run_python"] == Strategy("stream", ("code",), "statement", "tools", ())
    assert got["plain"].kind == "complete"


@pytest.mark.parametrize("bad", ["x", "x=", "x=stream", "x=stream:c:word", "x=items",
                                 "=complete", "x=complete:y"])
def test_bad_strategy_text_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="SPEC is start_on"):
        Strategy.parse(bad)
