"""A LangChain ``create_agent`` whose searches start while the model is still writing the call.

The model is a replay of recorded outputs at 50 tokens/s (standing for a GPU's decode speed; pass
``--vllm`` to use the real in-process vLLM engine with the bundled SmolLM2 instead, whose own
answers will differ). The tool answers each query in 0.8 s, as a web search might. The agent runs
twice, without and with ``@partial_tool(items="queries", combine="\n".join)``, and prints the
timings.
Run:  python examples/langchain_agent.py
"""

from __future__ import annotations

import sys
import time

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from conveyor_integrations import partial_tool
from conveyor_integrations.adapters.langchain import ChatConveyor
from conveyor_integrations.backends import Replay

FIRST = ('I will compare the three cities.\n<tool_call>{"name": "web_search", "arguments": '
         '{"queries": ["population of Lyon 2021 census", "population of Marseille 2021 census", '
         '"population of Toulouse 2021 census"]}}</tool_call>')
SECOND = "Marseille is the largest of the three, then Lyon, then Toulouse."
DATA = {"Lyon": "522,250", "Marseille": "873,076", "Toulouse": "504,078"}


@tool
def web_search(queries: list[str]) -> str:
    """Search the web for each query; one line of results per query."""
    lines = []
    for q in queries:
        time.sleep(0.8)                     # one search round trip
        city = next(c for c in DATA if c in q)
        lines.append(f"{q}: {DATA[city]}")
    return "\n".join(lines)


def backend() -> object:
    if "--vllm" in sys.argv:
        from conveyor_integrations.backends import VLLMEngine

        return VLLMEngine()
    return Replay([FIRST, SECOND], tokens_per_s=50)


def run(tool_obj: object, label: str) -> float:
    agent = create_agent(ChatConveyor(backend=backend()), tools=[tool_obj])
    t0 = time.perf_counter()
    out = agent.invoke({"messages": [HumanMessage("Which is bigger: Lyon, Marseille, Toulouse?")]})
    elapsed = time.perf_counter() - t0
    meta = out["messages"][1].response_metadata["conveyor"]
    for call in meta["calls"]:
        where = (f"started {call['decode_end'] - call['tool_start']:.2f} s before decoding ended"
                 if call["early"] else "ran after decoding ended")
        print(f"{label:<10} {call['name']}: {where}")
    print(f"{label:<10} whole agent run {elapsed:.2f} s; answer: {out['messages'][-1].content}")
    return elapsed


if __name__ == "__main__":
    print("model:", "vLLM, bundled SmolLM2" if "--vllm" in sys.argv else "replay at 50 tokens/s")
    seq = run(web_search, "sequential")
    # each query runs as soon as its string is final, concurrently with the rest of the decoding;
    # the per-query lines, joined, are what the tool returns for the whole call
    par = run(partial_tool(web_search, items="queries", combine="\n".join), "partial")
    print(f"saved {seq - par:.2f} s ({100 * (seq - par) / seq:.0f} % of the sequential run)")
