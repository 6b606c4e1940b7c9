"""The ``conveyor`` command.

::

    conveyor demo [--model PATH] [--base-url URL] [--free]   # the main job (needs vLLM)
    conveyor serve [--model DIR] [--host H] [--port P]      # vLLM's OpenAI server, CPU settings
    conveyor bench [--backend replay|vllm] [--rates ...]    # the benchmark (extra "bench")
    conveyor analyze TRACE... [--tools MODULE:ATTR]         # what it would save on your runs
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]

USAGE = """usage: conveyor COMMAND [options]

commands:
  demo    an agent on vLLM (in-process, bundled SmolLM2) whose program runs while it is written
  serve   vLLM's OpenAI-compatible server on the bundled SmolLM2 (or --model), set up for a CPU,
          with the hermes tool parser; prints the ChatOpenAI(...) / OpenAICompatible(...) lines
  bench   every workload sequential / complete-call / partial / ideal; overhead; scale
  analyze what partial execution would save on recorded runs (LangSmith exports, OTLP JSON,
          chat-completion logs, results.json)
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``conveyor <command>``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command in ("demo", "bench"):
        # vLLM on CPU: the engine core runs the model itself (no worker process of its own)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if command == "demo":
        from .demo import main as demo

        return demo(rest)
    if command == "bench":
        from .bench.cli import main as bench

        return bench(rest)
    if command == "analyze":
        from .analyze.cli import main as analyze

        return analyze(rest)
    if command == "serve":
        from .serve import main as serve

        return serve(rest)
    print(f"conveyor: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
