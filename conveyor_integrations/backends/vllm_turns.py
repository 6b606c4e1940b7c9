"""Earlier turns, as the model wrote them, so an agent's next prompt hits vLLM's prefix cache.

Rebuilt from the structured message (:mod:`.vllm_prompt`), an assistant turn differs from what the model decoded: the parser moves the newline
between two ``<tool_call>`` blocks into the text, the arguments come back re-serialised
(LangChain: ``json.dumps`` spacing and ``\\u00fc`` escapes), and re-encoding the text rarely
gives the model's own token ids (a forced or sampled turn often spells ``" three"`` as
``" ", "th", "re", "e"``). Either way the next prompt leaves (previous prompt + generated
tokens) inside the first assistant turn, and vLLM's prefix cache stops there. So the engine
remembers each finished turn's text and token ids, keyed by what the turn *says*
(:func:`raw_key`: the text outside the ``<tool_call>`` blocks, and each call's name and
arguments); an assistant message that says exactly that (:func:`message_key`) is rendered as
the model's text (``hermes_messages``/``native_messages`` take a ``raw_text`` lookup) and its
tokens are spliced in (:meth:`TurnMemo.prompt_ids`). A message whose text or calls were edited
no longer matches and is rendered from its structured fields. Nothing travels in the messages
(LangChain's ``convert_to_openai_messages`` keeps only role, content, name, tool_calls and
tool_call_id; LlamaIndex's OpenAI integration sends ``additional_kwargs`` over the wire): the
tokens exist only in the engine, and they are only worth anything where its prefix cache is.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .vllm_prompt import RawText, text_content

__all__ = ["TurnMemo", "message_key", "raw_key"]

Message = Mapping[str, Any]
TurnKey = tuple[str, tuple[tuple[str, str], ...]]
"""What an assistant turn says: its text, and each call's name and canonical JSON arguments."""
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _canonical(args: Any) -> str | None:
    with contextlib.suppress(TypeError, ValueError):
        if isinstance(args, str):
            args = json.loads(args or "{}")
        if isinstance(args, dict):
            return json.dumps(args, ensure_ascii=False, sort_keys=True)
    return None


def message_key(message: Message) -> TurnKey | None:
    """What an assistant message says (text content; calls' names and arguments, whitespace and
    key order aside); None when a call's arguments are not a JSON object."""
    calls = []
    for call in message.get("tool_calls") or ():
        f = call.get("function") or {}
        args = _canonical(f.get("arguments") or "{}")
        if args is None or not isinstance(f.get("name"), str):
            return None
        calls.append((f["name"], args))
    return text_content(message.get("content")), tuple(calls)


def raw_key(raw: str) -> TurnKey | None:
    """What a model's Hermes text says, read as the ``hermes`` parser reads it: the text outside
    the ``<tool_call>`` blocks, and each block's name and arguments; None when a block is not a
    complete call (a truncated or malformed one: the parser's message then says something else).

    >>> raw_key('Sure.\\n<tool_call>\\n{"name": "f", "arguments": {"b": 1, "a": "ü"}}\\n</tool_call>')
    ('Sure.\\n', (('f', '{"a": "ü", "b": 1}'),))
    """
    calls = []
    for body in _CALL_BLOCK.findall(raw):
        try:
            call = json.loads(body)
        except ValueError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        args = call.get("arguments", call.get("parameters", {}))
        canonical = _canonical(args) if isinstance(args, dict) else None
        if canonical is None:
            return None
        calls.append((call["name"], canonical))
    text = _CALL_BLOCK.sub("", raw)
    if "<tool_call>" in text or "</tool_call>" in text:
        return None
    return text, tuple(calls)


class TurnMemo:
    """The text and token ids of the turns an engine decoded, found again by what they say.

    ``add(text, ids)`` after a turn (``ids=None``: the ids are unknown, keep the text);
    :meth:`prompt_ids` renders a conversation with each remembered assistant turn as the
    model's text and its ids spliced in. Least recently used turns go first once the ids and
    texts kept pass ``max_size`` (tokens plus characters). Not thread-safe: the engine uses it
    from its own loop only.

    >>> memo = TurnMemo()
    >>> memo.add('<tool_call>{"name":"f","arguments":{}}</tool_call>', [7, 8])
    >>> msg = {"role": "assistant", "content": "",
    ...        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    >>> memo.get(msg)
    ('<tool_call>{"name":"f","arguments":{}}</tool_call>', [7, 8])
    """

    def __init__(self, max_size: int = 1 << 22) -> None:
        self.max_size = max_size
        self._turns: OrderedDict[TurnKey, tuple[str, array[int] | None]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._turns)

    def add(self, text: str, ids: Sequence[int] | None) -> None:
        """Remember a finished turn's ``text`` and the ``ids`` that spell it exactly."""
        key = raw_key(text)
        if key is None or (ids is None and not key[1]):  # nothing a rebuilt message would lose
            return
        old = self._turns.pop(key, None)
        if old is not None:
            self._size -= len(old[0]) + len(old[1] or ())
        self._turns[key] = (text, None if ids is None else array("i", ids))
        self._size += len(text) + len(ids or ())
        while self._size > self.max_size and len(self._turns) > 1:
            _, (t, i) = self._turns.popitem(last=False)
            self._size -= len(t) + len(i or ())

    def get(self, message: Message) -> tuple[str, list[int] | None] | None:
        """The remembered ``(text, ids)`` of the turn that says what ``message`` says."""
        key = message_key(message) if message.get("role") == "assistant" else None
        if key is None or key not in self._turns:
            return None
        self._turns.move_to_end(key)
        text, ids = self._turns[key]
        return text, None if ids is None else ids.tolist()

    def prompt_ids(self, messages: Sequence[Message], render: Callable[[RawText], str],
                   encode: Callable[[str], list[int]]) -> list[int]:
        """The prompt of ``messages``: ``render(raw_text)`` (the chat template over the messages
        as ``hermes_messages``/``native_messages`` build them with ``raw_text``) encoded, with
        the remembered turns' own ids in place of their text.

        The turns are found in a second rendering where each one's text is a unique marker;
        where the template changes the text around a marker (so that putting the texts back
        does not give the first rendering) the whole text is encoded as it is."""
        hits = {id(m): hit for m in messages if (hit := self.get(m)) is not None}
        text = render(lambda m: hits[id(m)][0] if id(m) in hits else None)
        spliced = {k: ids for k, (_, ids) in hits.items() if ids is not None}
        if not spliced:
            return encode(text)
        tag = secrets.token_hex(8)
        marks = {k: f"\x00turn{n}-{tag}\x00" for n, k in enumerate(spliced)}
        marked = render(lambda m: marks.get(id(m)) or (hits[id(m)][0] if id(m) in hits else None))
        by_mark = {marks[k]: (hits[k][0], ids) for k, ids in spliced.items()}
        ids: list[int] = []
        rebuilt: list[str] = []
        seen = 0
        for part in re.split("(\x00turn\\d+-" + tag + "\x00)", marked):
            turn = by_mark.get(part)
            if turn is None:
                ids += encode(part) if part else []
                rebuilt.append(part)
            else:
                seen += 1
                ids += turn[1]
                rebuilt.append(turn[0])
        if seen != len(by_mark) or "".join(rebuilt) != text:
            return encode(text)
        return ids
