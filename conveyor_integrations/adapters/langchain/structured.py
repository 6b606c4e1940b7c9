"""``ChatConveyor.with_structured_output``: the answer as a schema's object, by three methods.

``method`` says how the answer is steered, and where it is read from:

* ``"function_calling"`` (the default): the schema is bound as the one tool and a call forced
  (``tool_choice="required"``; ``VLLMEngine`` constrains the call with a grammar); the value is
  the call's arguments. An answer without the call is read as text (below): a backend that
  cannot force calls (a ``Replay`` of text) still gives the value.
* ``"json_mode"``: the answer is a JSON object: ``VLLMEngine`` constrains decoding to JSON
  (``structured_outputs={"json_object": True}``), ``OpenAICompatible`` sends
  ``response_format={"type": "json_object"}``. The prompt says which keys. ``schema`` may be
  None (any object, as a dict).
* ``"json_schema"``: the answer follows the schema: ``VLLMEngine`` constrains decoding with it
  (``structured_outputs={"json": ...}``), ``OpenAICompatible`` sends a ``json_schema``
  ``response_format`` (vLLM's server, OpenAI and llama.cpp honour it).

Other backends (``Replay``...) constrain nothing. A text answer is read as the JSON object in
it: bare, inside a code fence, or after a line of prose. A pydantic schema gives a validated
instance, a TypedDict or JSON schema a dict. An answer that does not parse raises
``OutputParserException`` naming the method and quoting the answer (with ``include_raw=True``
it is under ``"parsing_error"`` instead, next to ``"raw"`` and ``"parsed": None``). Streamed,
a dict grows as its JSON arrives; a pydantic object comes once, whole. Example::

    >>> from pydantic import BaseModel
    >>> from conveyor_integrations.adapters.langchain import ChatConveyor
    >>> from conveyor_integrations.backends import Replay
    >>> class Joke(BaseModel):
    ...     setup: str
    ...     punchline: str
    >>> answer = '```json\\n{"setup": "Why?", "punchline": "Because."}\\n```'
    >>> model = ChatConveyor(backend=Replay(answer, tokens_per_s=None, cycle=True))
    >>> model.with_structured_output(Joke, method="json_mode").invoke("A joke, as JSON")
    Joke(setup='Why?', punchline='Because.')
    >>> model.with_structured_output(Joke.model_json_schema(), method="json_schema").invoke("?")
    {'setup': 'Why?', 'punchline': 'Because.'}
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from operator import itemgetter
from typing import Any, cast

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.output_parsers import BaseTransformOutputParser
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.json import parse_partial_json
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict

__all__ = ["METHODS", "StructuredOutputParser", "backend_constraint", "structured_output"]

METHODS = ("function_calling", "json_mode", "json_schema")
_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?")


def _json_span(text: str) -> str | None:
    """Where the answer's JSON object is: the text from its ``{``, inside a fence if any."""
    body = text.strip()
    if not body.startswith("{"):
        fence = _FENCE.search(body)
        if fence is not None:
            body = body[fence.end():]
            end = body.find("```")
            body = body if end < 0 else body[:end]
    start = body.find("{")
    return None if start < 0 else body[start:]


class _Unparsable(Exception):
    """``(why, text)``: the answer does not give the schema's value."""


def _names(calls: list[Any]) -> str:
    return ", ".join(str(c.get("name")) for c in calls)


class StructuredOutputParser(BaseTransformOutputParser[Any]):
    """Reads a structured answer from a ``ChatConveyor`` message (see the module's docstring).

    ``schema_``: a pydantic class (an instance comes out), a TypedDict or JSON schema (a dict),
    or None (any JSON object). ``tool_name``: the call read under ``function_calling``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    schema_: Any = None
    method: str = "function_calling"
    tool_name: str | None = None

    @property
    def _type(self) -> str:
        return "conveyor_structured_output"

    def _object(self, obj: Any, text: str) -> Any:
        if not isinstance(obj, dict):
            raise _Unparsable(f"expected a JSON object, got {type(obj).__name__}", text)
        schema = self.schema_
        if not is_basemodel_subclass(schema):
            return obj
        try:
            if hasattr(schema, "model_validate"):
                return schema.model_validate(obj)
            return schema.parse_obj(obj)        # a pydantic.v1 model
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError (v1 and v2)
            raise _Unparsable(f"the object does not fit {schema.__name__}: {exc}", text) from exc

    def _from_call(self, message: BaseMessage, partial: bool) -> tuple[bool, Any]:
        """``(True, value)`` when the message carries the schema's call (``value`` is None
        while a streamed call is incomplete); ``(False, None)``: read the text."""
        calls = getattr(message, "tool_calls", None) or []
        mine = [c for c in calls if c.get("name") == self.tool_name]
        if mine:
            args = mine[0].get("args")
            if partial:
                return True, args if isinstance(args, dict) and args else None
            return True, self._object(args, json.dumps(args))
        if partial:
            return bool(getattr(message, "tool_call_chunks", None)), None
        invalid = getattr(message, "invalid_tool_calls", None) or []
        bad = [c for c in invalid if c.get("name") == self.tool_name]
        if bad:
            raise _Unparsable(f"the {self.tool_name} call is malformed ({bad[0].get('error')})",
                              str(bad[0].get("args") or message.text))
        calls = [*calls, *invalid]
        if calls:
            raise _Unparsable(f"the model called {_names(calls)}, not {self.tool_name}",
                              message.text)
        return False, None

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        """The value of the answer. ``partial``: a streamed answer so far (None when nothing
        can be said yet; never raises)."""
        if partial and is_basemodel_subclass(self.schema_):
            return None             # an object comes once, whole and validated
        gen = result[0]
        message = gen.message if isinstance(gen, ChatGeneration) else None
        if partial:
            return self._value(gen, message, partial=True)
        try:
            return self._value(gen, message, partial=False)
        except _Unparsable as exc:
            why, text = exc.args
            meta = message.response_metadata if message is not None else {}
            if meta.get("finish_reason") == "length":
                why += " (decoding stopped at the token limit: finish_reason='length')"
            shown = text if len(text) <= 300 else text[:300] + "..."
            raise OutputParserException(
                f"with_structured_output(method={self.method!r}): {why}; the answer was "
                f"{shown!r}", llm_output=text) from exc.__cause__

    def _value(self, gen: Generation, message: BaseMessage | None, *, partial: bool) -> Any:
        if message is not None and self.method == "function_calling":
            found, value = self._from_call(message, partial)
            if found:
                return value
        text = message.text if message is not None else gen.text
        span = _json_span(text)
        if partial:
            if span is None:
                return None
            try:
                obj = parse_partial_json(span)
            except ValueError:
                return None
            return obj if isinstance(obj, dict) and obj else None
        if span is None:
            calls = getattr(message, "tool_calls", None)
            if calls and not text.strip():
                raise _Unparsable(f"the model called {_names(calls)} instead of answering "
                                  "with JSON text", text)
            raise _Unparsable("no JSON object in it", text)
        try:
            obj, _ = json.JSONDecoder().raw_decode(span)
        except ValueError as exc:
            raise _Unparsable(f"its JSON does not parse ({exc})", text) from exc
        return self._object(obj, text)

    def parse(self, text: str) -> Any:
        """The value of a text answer."""
        return self.parse_result([Generation(text=text)])

    def _transform(self, input: Iterator[str | BaseMessage]) -> Iterator[Any]:
        stream = _Stream(self)
        for chunk in input:
            yield from stream.feed(chunk)
        yield from stream.end()

    async def _atransform(self, input: AsyncIterator[str | BaseMessage]
                          ) -> AsyncIterator[Any]:
        stream = _Stream(self)
        async for chunk in input:
            for value in stream.feed(chunk):
                yield value
        for value in stream.end():
            yield value


class _Stream:
    """A streamed answer so far: each chunk may give a new partial value; the end, the final."""

    def __init__(self, parser: StructuredOutputParser) -> None:
        self.parser = parser
        self.acc: Any = None
        self.last: Any = None

    def _generations(self) -> list[Generation]:
        if isinstance(self.acc, BaseMessage):
            return [ChatGeneration(message=self.acc)]
        return [Generation(text=self.acc or "")]

    def feed(self, chunk: str | BaseMessage) -> list[Any]:
        if self.acc is None or not isinstance(chunk, BaseMessageChunk | str):
            self.acc = chunk
        else:
            self.acc = self.acc + chunk
        value = self.parser.parse_result(self._generations(), partial=True)
        if value is None or value == self.last:
            return []
        self.last = value
        return [value]

    def end(self) -> list[Any]:
        final = self.parser.parse_result(self._generations())
        return [] if final == self.last else [final]


def backend_constraint(backend: Any, method: str, schema: Any, strict: bool | None
                       ) -> dict[str, Any]:
    """The sampling parameters that make ``backend`` decode ``method``'s JSON: what its
    ``json_sampling(function, strict)`` gives (``VLLMEngine``, ``OpenAICompatible``); {} for a
    backend that constrains nothing, and for ``function_calling``, forced by ``tool_choice``."""
    json_sampling = getattr(backend, "json_sampling", None)
    if method == "function_calling" or json_sampling is None:
        return {}
    function = (convert_to_openai_tool(schema, strict=strict)["function"]
                if schema and method != "json_mode" else None)
    return dict(json_sampling(function, strict))


def structured_output(model: Any, schema: Mapping[str, Any] | type | None, *, method: str,
                      include_raw: bool, strict: bool | None, kwargs: dict[str, Any]
                      ) -> Runnable[Any, Any]:
    """The runnable ``model.with_structured_output(...)`` returns (see the module's docstring);
    ``kwargs`` are bound with the method's own (sampling parameters, ``tool_choice``...)."""
    if method not in METHODS:
        raise ValueError(f"with_structured_output: unknown method {method!r}; "
                         f"expected one of {', '.join(map(repr, METHODS))}")
    if schema is None and method != "json_mode":
        raise ValueError(f"with_structured_output(method={method!r}) needs a schema "
                         "(only 'json_mode' takes None)")
    if strict is not None and method == "json_mode":
        raise ValueError("with_structured_output: strict is not supported with 'json_mode'")
    name = convert_to_openai_tool(schema)["function"]["name"] if schema is not None else None
    bound: dict[str, Any] = {}
    if schema is not None:
        bound["ls_structured_output_format"] = {
            "kwargs": {"method": method, "strict": strict}, "schema": schema}
    if method == "function_calling":
        kwargs = {"tool_choice": "required", **bound, **kwargs}
        llm = model.bind_tools([schema], strict=strict, **kwargs)
    else:
        bound.update(backend_constraint(model.backend, method, schema, strict))
        llm = model.bind(**{**bound, **kwargs})
    parser = StructuredOutputParser(schema_=schema, method=method, tool_name=name)
    if not include_raw:
        return cast("Runnable[Any, Any]", llm | parser)
    with_parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser,
                                             parsing_error=lambda _: None)
    without = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | with_parsed.with_fallbacks(
        [without], exception_key="parsing_error")
