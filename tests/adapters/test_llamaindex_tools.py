"""``partial_tool`` on LlamaIndex FunctionTools: same metadata, claims by name and arguments."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

pytest.importorskip("llama_index.core")
from llama_index.core.tools import FunctionTool, ToolOutput
from llama_index.core.workflow import Context

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.llamaindex import ConveyorFunctionTool, ConveyorLLM
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler


def _decode(llm: ConveyorLLM, tools: list[Any]) -> list[Any]:
    """One turn with ``tools`` bound; the tool calls it produced."""
    return llm.get_tool_calls_from_response(llm.chat_with_tools(
        tools, user_msg="go", allow_parallel_tool_calls=True), error_on_no_tool_call=False)


def test_wrapping_keeps_metadata_callbacks_and_partial_params(sched: Scheduler) -> None:
    seen: list[Any] = []

    def greet(name: str, greeting: str, punct: str = "!") -> str:
        """Greet someone."""
        return f"{greeting}, {name}{punct}"

    tool = FunctionTool.from_defaults(fn=greet, partial_params={"greeting": "Hello"},
                                      callback=lambda out: seen.append(out))
    wrapped = partial_tool(tool, start_on=["name"])
    assert isinstance(wrapped, ConveyorFunctionTool) and isinstance(wrapped, FunctionTool)
    assert wrapped.metadata is tool.metadata and wrapped.real_fn is greet
    assert wrapped.partial_params == {"greeting": "Hello"}
    assert wrapped.conveyor_spec.name == "greet"      # the spec travels on the tool object
    # nothing ran early: the tool runs as usual (sync, async and __call__)
    assert wrapped.call(name="Ann").content == "Hello, Ann!"
    assert asyncio.run(wrapped.acall(name="Bo", punct=".")).content == "Hello, Bo."
    assert wrapped(name="Cy").content == "Hello, Cy!"
    assert seen == ["Hello, Ann!", "Hello, Bo.", "Hello, Cy!"]

    # an early result comes out in the same ToolOutput shape, callbacks included
    call = '<tool_call>{"name": "greet", "arguments": {"name": "Di"}}</tool_call>'
    (sel,) = _decode(ConveyorLLM(backend=Replay(call, tokens_per_s=None)), [wrapped])
    out = wrapped.call(**sel.tool_kwargs)
    assert isinstance(out, ToolOutput) and out.content == "Hello, Di!"
    assert out.tool_name == "greet" and out.raw_output == "Hello, Di!"
    assert seen[-1] == "Hello, Di!"
    assert sched.pending() == 0


async def test_async_tool_runs_early_on_the_caller_s_loop(sched: Scheduler) -> None:
    loops: list[Any] = []

    async def fetch(url: str) -> str:
        """Fetch a page."""
        loops.append(threading.current_thread().name)
        await asyncio.sleep(0.2)
        return f"<html>{url}</html>"

    tool = partial_tool(FunctionTool.from_defaults(async_fn=fetch), start_on=["url"])
    assert tool.conveyor_spec.is_async is True
    call = ('<tool_call>{"name": "fetch", "arguments": {"url": "https://example.org"}}'
            '</tool_call>\nI am fetching it for you, one moment please.')
    llm = ConveyorLLM(backend=Replay(call, tokens_per_s=100))
    response = await llm.achat_with_tools([tool], user_msg="go")
    (sel,) = llm.get_tool_calls_from_response(response)
    out = await tool.acall(**sel.tool_kwargs)
    assert out.content == "<html>https://example.org</html>"
    # ran once, early, on the loop of achat_with_tools (the caller's), not the scheduler's
    assert loops == [threading.current_thread().name] != ["conveyor-scheduler"]
    assert response.additional_kwargs["conveyor"]["calls"][0]["early"] is True
    assert sched.pending() == 0


def test_sync_tool_runs_early_on_the_scheduler_pool(sched: Scheduler) -> None:
    threads: list[str] = []

    def slow(x: int) -> int:
        """Double x slowly."""
        threads.append(threading.current_thread().name)
        return 2 * x

    tool = partial_tool(FunctionTool.from_defaults(fn=slow), start_on=["x"])
    assert tool.conveyor_spec.is_async is False
    call = '<tool_call>{"name": "slow", "arguments": {"x": 21}}</tool_call>'
    (sel,) = _decode(ConveyorLLM(backend=Replay(call, tokens_per_s=None)), [tool])
    assert tool.call(**sel.tool_kwargs).raw_output == 42
    assert len(threads) == 1 and threads[0].startswith("conveyor-tool")
    assert sched.pending() == 0


def test_claims_are_by_name_and_arguments_exactly_once(sched: Scheduler) -> None:
    runs: list[str] = []

    def echo(text: str) -> str:
        """Echo."""
        runs.append(text)
        return text.upper()

    tool = partial_tool(FunctionTool.from_defaults(fn=echo), start_on=["text"])
    def one(t: str) -> str:
        return f'<tool_call>{{"name": "echo", "arguments": {{"text": "{t}"}}}}</tool_call>'

    calls = one("a") + one("b") + one("a")
    sels = _decode(ConveyorLLM(backend=Replay(calls, tokens_per_s=None)), [tool])
    assert [s.tool_kwargs["text"] for s in sels] == ["a", "b", "a"]
    assert len({s.tool_id for s in sels}) == 3
    assert [tool.call(**s.tool_kwargs).content for s in sels] == ["A", "B", "A"]
    assert sorted(runs) == ["a", "a", "b"]                           # three early runs only
    assert tool.call(text="a").content == "A" and runs[-1] == "a"    # a 4th call runs the tool
    assert len(runs) == 4
    # other arguments than decoded: no early result, the tool runs on what it was given
    (sel,) = _decode(ConveyorLLM(backend=Replay(one("a"), tokens_per_s=None)), [tool])
    assert tool.call(text="zzz").content == "ZZZ"
    assert tool.call(**sel.tool_kwargs).content == "A"
    assert sched.pending() == 0


def test_errors_of_early_runs_surface_as_the_tool_s_own(sched: Scheduler) -> None:
    def broken(q: str) -> str:
        """Always fails."""
        raise RuntimeError(f"backend down for {q}")

    tool = partial_tool(FunctionTool.from_defaults(fn=broken), start_on=["q"])
    call = '<tool_call>{"name": "broken", "arguments": {"q": "x"}}</tool_call>'
    (sel,) = _decode(ConveyorLLM(backend=Replay(call, tokens_per_s=None)), [tool])
    with pytest.raises(RuntimeError, match="backend down for x"):
        tool.call(**sel.tool_kwargs)
    assert sched.pending() == 0


def test_rejects_what_cannot_run_early(sched: Scheduler) -> None:
    async def needs_ctx(ctx: Context, q: str) -> str:
        """Uses the workflow context."""
        return q

    needs_ctx.__annotations__["ctx"] = Context   # as without `from __future__ import annotations`
    with pytest.raises(TypeError, match="Context"):
        partial_tool(FunctionTool.from_defaults(async_fn=needs_ctx), start_on=["q"])
    from conveyor_integrations.adapters.llamaindex.tools import wrap_llamaindex_tool

    with pytest.raises(TypeError, match="FunctionTool"):
        wrap_llamaindex_tool(object(), sched)


def test_rewrapping_replaces_the_strategy(sched: Scheduler) -> None:
    def f(a: str, b: str = "") -> str:
        """F."""
        return a + b

    first = partial_tool(FunctionTool.from_defaults(fn=f), start_on=["a"])
    from conveyor_integrations.adapters.llamaindex.tools import wrap_llamaindex_tool

    second = wrap_llamaindex_tool(first, sched, start_on=["a", "b"])
    assert second.conveyor_inner is first.conveyor_inner                # type: ignore[attr-defined]
    # a new spec of its own (nothing is registered by name: each object carries its spec)
    spec = second.conveyor_spec                                         # type: ignore[attr-defined]
    assert spec is not first.conveyor_spec and spec.name == "f"


def test_an_aborted_call_yields_its_reason_sync_and_async(sched: Scheduler) -> None:
    from conveyor_integrations import EarlyAbort
    from conveyor_integrations.events import FieldDone

    class NoNegatives:
        async def start(self, call: Any) -> None:
            return None

        async def feed(self, event: Any) -> None:
            if isinstance(event, FieldDone) and event.value < 0:
                raise EarlyAbort(f"{event.path[-1]} must be >= 0")

        async def finish(self, args: dict[str, Any]) -> str:
            return "ok"

        async def cancel(self) -> None:
            return None

    ran: list[int] = []

    def put(a: int, b: int = 0) -> str:
        """Store two numbers."""
        ran.append(a)
        return "stored"

    tool = partial_tool(FunctionTool.from_defaults(fn=put), execution=NoNegatives)
    call = '<tool_call>{"name": "put", "arguments": {"a": -1, "b": 22222222222222}}</tool_call>'
    llm = ConveyorLLM(backend=Replay([call, call], tokens_per_s=100))
    for invoke in (lambda kw: tool.call(**kw), lambda kw: asyncio.run(tool.acall(**kw))):
        response = llm.chat_with_tools([tool], user_msg="go")
        assert response.additional_kwargs["conveyor"]["abort"]["reason"] == "a must be >= 0"
        (sel,) = llm.get_tool_calls_from_response(response)
        assert sel.tool_kwargs == {"a": -1}
        out = invoke(sel.tool_kwargs)
        assert out.is_error and out.content == "a must be >= 0"
    assert ran == [] and sched.pending() == 0


def test_tools_needing_approval_never_start_early(sched: Scheduler) -> None:
    ran: list[str] = []

    def delete_file(path: str) -> str:
        """Delete a file."""
        ran.append(path)
        return f"deleted {path}"

    tool = partial_tool(FunctionTool.from_defaults(fn=delete_file), start_on=["path"])
    call = '<tool_call>{"name": "delete_file", "arguments": {"path": "/tmp/x"}}</tool_call>'
    llm = ConveyorLLM(backend=Replay(call, tokens_per_s=None), approval_required=["delete_file"])
    (sel,) = _decode(llm, [tool])
    time.sleep(0.1)
    assert ran == []
    assert tool.call(**sel.tool_kwargs).content == "deleted /tmp/x" and ran == ["/tmp/x"]
    assert sched.pending() == 0
