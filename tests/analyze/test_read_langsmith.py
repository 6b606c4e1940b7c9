"""LangSmith run exports of a real LangChain ``create_agent`` run on ``ChatConveyor`` (Replay,
streamed), collected with langchain-core's own tracer and dumped as LangSmith's export would."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import ToolException, tool
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.analyze.estimate import estimate_run
from conveyor_integrations.analyze.read_langsmith import runs_of_langsmith
from conveyor_integrations.analyze.readers import read_traces
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler

CALL = ('Let me look that up.\n<tool_call>{"name": "web_search", "arguments": '
        '{"query": "weather in Paris", "k": 3}}</tool_call>')
ANSWER = "It is sunny in Paris."
ARGS = {"query": "weather in Paris", "k": 3}


def _record(fail: bool = False) -> tuple[Any, list[Any]]:
    """Run the agent (streamed: ``stream_mode="messages"``) and return the collected root run
    and the agent's messages."""
    @tool
    def web_search(query: str, k: int = 3) -> str:
        """Search the web."""
        time.sleep(0.2)
        if fail:
            raise ToolException("search backend is down")
        return "sunny"

    web_search.handle_tool_error = True
    agent = create_agent(ChatConveyor(backend=Replay([CALL, ANSWER], tokens_per_s=200)),
                         tools=[web_search])
    collector = RunCollectorCallbackHandler()
    msgs: list[Any] = []
    for mode, data in agent.stream({"messages": [HumanMessage("weather in Paris?")]},
                                   config={"callbacks": [collector]},
                                   stream_mode=["messages", "values"]):
        if mode == "values":       # "messages" mode is what makes the model stream
            msgs = list(data["messages"])
    (root,) = collector.traced_runs
    return root, msgs


def _export(run: Any, full: bool = True) -> dict[str, Any]:
    """A run with its ``child_runs``, as JSON. ``full``: each chunk as its own type dumps it
    (``serialize_as_any``); otherwise as ``run.dict()``/``model_dump()`` do, which dump a
    chunk's message as the declared ``BaseMessage`` and so drop its ``tool_call_chunks``."""
    d = run.model_dump(serialize_as_any=full)
    d["child_runs"] = [_export(c, full) for c in run.child_runs]
    return d


def _json(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.isoformat()
                                 if isinstance(o, datetime) else str(o)))


def _runs_of_type(run: Any, kind: str) -> list[Any]:
    found = [run] if run.run_type == kind else []
    return found + [r for c in run.child_runs for r in _runs_of_type(c, kind)]


def test_streamed_export_gives_each_chunk_at_its_time_and_pairs_the_tool(
        sched: Scheduler) -> None:
    root, msgs = _record()
    (run,) = runs_of_langsmith([("", _json(_export(root)))], "runs.json")
    llms, (tool_run,) = _runs_of_type(root, "llm"), _runs_of_type(root, "tool")
    assert run.source == "langsmith" and run.name.startswith(root.name)
    assert len(run.turns) == len(llms) == 2
    first, second = run.turns
    base = llms[0].start_time

    events = [e for e in llms[0].events if e["name"] == "new_token"
              and (e["kwargs"]["chunk"].message.content
                   or e["kwargs"]["chunk"].message.tool_call_chunks)]
    assert first.tool_format == "openai" and len(first.chunks) == len(events)
    for (at, _), ev in zip(first.chunks, events, strict=True):
        assert at == pytest.approx((ev["time"] - base).total_seconds(), abs=1e-6)
    assert "".join(d.get("content", "") for _, d in first.chunks) == "Let me look that up.\n"
    calls = [tc for _, d in first.chunks for tc in d.get("tool_calls", ())]
    ai = next(m for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    assert calls[0]["id"] == ai.tool_calls[0]["id"] and calls[0]["function"]["name"] == "web_search"
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == ARGS
    assert first.output_tokens == ai.usage_metadata["output_tokens"]
    assert first.end == pytest.approx((llms[0].end_time - base).total_seconds(), abs=1e-6)

    (tool_rec,) = first.tools
    assert tool_rec.name == "web_search" and tool_rec.call_id == ai.tool_calls[0]["id"]
    assert tool_rec.args == ARGS and tool_rec.error is False
    assert tool_rec.duration_s == pytest.approx(
        (tool_run.end_time - tool_run.start_time).total_seconds(), abs=1e-6)
    assert tool_rec.duration_s >= 0.2
    assert tool_rec.start == pytest.approx((tool_run.start_time - base).total_seconds(), abs=1e-6)

    assert second.tools == [] and second.tool_format is None      # text alone
    assert "".join(d for _, d in second.chunks) == ANSWER
    assert second.start > tool_rec.end

    est = estimate_run(run)
    (call,) = est.turns[0].calls
    assert call.name == "web_search" and call.tool_s == pytest.approx(tool_rec.duration_s)
    assert call.began == next(at for at, d in first.chunks if "tool_calls" in d)
    assert call.done == first.chunks[-1][0]


def test_lossy_export_reads_the_final_message(sched: Scheduler) -> None:
    root, msgs = _record()
    notes: list[str] = []
    (run,) = runs_of_langsmith([("", _json(_export(root, full=False)))], "runs.json", notes)
    first = run.turns[0]
    ai = next(m for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    assert first.chunks == [] and first.text == "Let me look that up.\n"
    assert first.tool_calls == [{"id": ai.tool_calls[0]["id"], "name": "web_search",
                                 "arguments": ARGS}]
    assert first.tool_format == "openai" and first.tools[0].call_id == ai.tool_calls[0]["id"]
    assert any("carry no tool calls" in n for n in notes)


def _hosted(root: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs as LangSmith serves them: flat (``parent_run_id`` links), the first
    ``new_token`` event alone and without its ``kwargs``, ``completion_tokens`` set."""
    out = []

    def walk(r: dict[str, Any]) -> None:
        run = {k: v for k, v in r.items() if k != "child_runs"}
        tokens = [e for e in run.get("events") or () if e["name"] == "new_token"]
        run["events"] = [e for e in run.get("events") or () if e["name"] != "new_token"]
        if tokens:
            run["events"].insert(1, {"name": "new_token", "time": tokens[0]["time"]})
            run["first_token_time"] = tokens[0]["time"]
        out.append(run)
        for c in r["child_runs"]:
            walk(c)

    walk(root)
    return out


def test_langsmith_served_runs_as_json_lines(sched: Scheduler, tmp_path: Path) -> None:
    root, _msgs = _record()
    flat = _hosted(_json(_export(root)))
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(flat)))   # any order
    notes: list[str] = []
    (run,) = read_traces([path], notes=notes)
    assert [len(t.chunks) for t in run.turns] == [0, 0]
    assert run.turns[0].tool_calls[0]["name"] == "web_search"
    assert run.turns[1].text == ANSWER and run.turns[1].tool_format is None
    assert run.turns[0].tools[0].duration_s >= 0.2
    assert any("LangSmith keeps only the first token" in n for n in notes)


def test_failed_tool_run_is_marked(sched: Scheduler) -> None:
    root, msgs = _record(fail=True)
    assert any(isinstance(m, ToolMessage) and m.status == "error" for m in msgs)
    (run,) = runs_of_langsmith([("", _json(_export(root)))])
    assert run.turns[0].tools[0].error is True


def _run(rid: str, kind: str, start: float, end: float, **more: Any) -> dict[str, Any]:
    iso = lambda s: f"2025-01-01T00:00:{s:09.6f}+00:00"
    return {"id": rid, "name": more.pop("name", kind), "run_type": kind,
            "start_time": iso(start), "end_time": iso(end), **more}


def test_traces_group_and_sub_agents_are_not_turns() -> None:
    final = {"generations": [[{"message": {"type": "ai", "content": "", "tool_calls": [
        {"name": "helper", "args": {}, "id": "c1"}]}}]]}
    inner = _run("i", "llm", 1.2, 1.5, parent_run_id="t", trace_id="a", outputs=final)
    runs = [_run("a", "chain", 0, 3, trace_id="a"),
            _run("m", "llm", 0.1, 1.0, parent_run_id="a", trace_id="a", outputs=final),
            _run("t", "tool", 1.1, 2.0, name="helper", parent_run_id="a", trace_id="a",
                 extra={"tool_call_id": "c1"}),
            inner,
            _run("b", "llm", 5, 6, trace_id="b")]
    notes: list[str] = []
    first, second = runs_of_langsmith([(f"record {i}", r) for i, r in enumerate(runs)],
                                      "x.json", notes)
    assert len(first.turns) == 1 and first.turns[0].tools[0].duration_s == pytest.approx(0.9)
    assert first.turns[0].start == 0.0 and first.turns[0].tools[0].start == pytest.approx(1.0)
    assert second.turns[0].text is None and second.duration_s == 1.0
