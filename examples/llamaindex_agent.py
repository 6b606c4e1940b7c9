"""A LlamaIndex FunctionAgent whose tools start while the model is still writing its message.

The model is a replay of a recorded message at 40 tokens/s (standing for a GPU's decode speed;
a Replay backend, labelled as such below): it calls ``web_search`` twice and ``get_weather``
once, then answers. ``web_search`` and ``get_weather`` are ordinary LlamaIndex ``FunctionTool``s
with one ``partial_tool`` line each, so each starts as soon as its own arguments are decoded,
not when the whole message is. The script runs the same agent without partial execution, then
with it, and prints when each tool started relative to the end of decoding.
Run:  python examples/llamaindex_agent.py   (needs the ``llamaindex`` extra)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.llamaindex import ConveyorLLM
from conveyor_integrations.backends import Replay
from conveyor_integrations.scheduler import Scheduler

RATE = 40.0  # replayed tokens per second
MESSAGE = (
    "I will search for both cities and check the weather.\n"
    '<tool_call>{"name": "web_search", "arguments": {"query": "best museums in Paris"}}'
    "</tool_call>\n"
    '<tool_call>{"name": "web_search", "arguments": {"query": "best museums in Lyon"}}'
    "</tool_call>\n"
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
    "</tool_call>"
)
ANSWER = "Paris has the Louvre and the Orsay, Lyon its Musee des Confluences; Paris is sunny."


def web_search(query: str, k: int = 3) -> str:
    """Search the web and return the top k results."""
    time.sleep(0.6)  # a network round trip
    return f"top {k} results for {query!r}"


def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather of a city."""
    time.sleep(0.4)
    return f"{city}: sunny, 24 degrees {unit}"


def tools(partial: bool, sched: Scheduler) -> list[Any]:
    out = [FunctionTool.from_defaults(fn=web_search), FunctionTool.from_defaults(fn=get_weather)]
    if partial:
        out[0] = partial_tool(out[0], start_on=["query"], scheduler=sched)
        out[1] = partial_tool(out[1], start_on=["city", "unit"], scheduler=sched)
    return out


async def run(partial: bool) -> None:
    sched = Scheduler()
    llm = ConveyorLLM(backend=Replay([MESSAGE, ANSWER], tokens_per_s=RATE), scheduler=sched)
    agent = FunctionAgent(tools=tools(partial, sched), llm=llm,
                          system_prompt="You answer travel questions with tools.")
    t0 = time.perf_counter()
    handler = agent.run("Which museums should I visit in Paris and Lyon, and how is the weather?")
    first: AgentOutput | None = None
    tools_done = 0.0
    async for ev in handler.stream_events():
        if isinstance(ev, AgentOutput) and first is None:
            first = ev
        elif isinstance(ev, ToolCallResult):
            tools_done = time.perf_counter() - t0
    answer = await handler
    total = time.perf_counter() - t0
    sched.close()

    assert first is not None and first.raw is not None
    meta = first.raw["conveyor"]
    print(f"\n== {'partial execution' if partial else 'sequential (no partial execution)'} ==")
    print(f"decoding the tool-call message took {meta['decode_s']:.2f} s "
          f"(Replay backend at {RATE:.0f} tokens/s)")
    for c in meta["calls"]:
        args = next(t.tool_kwargs for t in first.tool_calls if t.tool_id == c["call_id"])
        if c["tool_start"] is None:
            where = "started after decoding ended (when the agent invoked it)"
        else:
            where = f"started {c['decode_end'] - c['tool_start']:.2f} s before decoding ended"
        print(f"  {c['name']}({args}): {where}")
    print(f"all tool results ready at {tools_done:.2f} s; agent done in {total:.2f} s")
    print(f"answer: {answer}")


async def main() -> None:
    await run(partial=False)
    await run(partial=True)


if __name__ == "__main__":
    asyncio.run(main())
