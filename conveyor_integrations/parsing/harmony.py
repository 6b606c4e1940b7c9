"""gpt-oss "harmony" output: messages with channels, tool calls addressed to ``functions.NAME``.

After a prompt that ends with ``<|start|>assistant`` the model writes a sequence of messages::

    <|channel|>analysis<|message|>The user wants the weather.<|end|>
    <|start|>assistant<|channel|>commentary<|message|>Let me look.<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>
    {"city": "Paris"}<|call|>

(without the line breaks). A header is ``[to=RECIPIENT]<|channel|>CHANNEL[ to=RECIPIENT][ TYPE]``
with ``TYPE`` written ``<|constrain|>json`` or just ``json``; the first message may or may not
repeat ``<|start|>assistant``. A message ends at ``<|end|>``, ``<|call|>`` or ``<|return|>``.

- ``to=functions.NAME``: a tool call whose content is the JSON arguments, ended by ``<|call|>``
  (``<|end|>``/``<|return|>`` are accepted too). The end of the stream before that is
  truncation: ``CallMalformed``. Any other recipient (the built-in ``python``,
  ``browser.search``, ``container.exec``...) is ``CallMalformed`` naming it: never run.
- ``final`` and recipient-less ``commentary`` (preambles), or any other channel: ``Text``, the
  messages' contents concatenated (as vLLM streams them).
- ``analysis``: reasoning, never ``Text``; kept on :attr:`HarmonyParser.reasoning`.

Special tokens arrive as text: ``<|end|>``, ``<|call|>``, ``<|return|>`` and ``<|start|>`` end
a message wherever they appear (a token, not characters, in the model's output), and a
malformed header or call is reported and skipped up to the message's end or the next
``<|start|>``. Text outside messages (before the first header, after an end) is ``Text``.

Hand-written: openai_harmony's ``StreamableParser`` works on token ids and hands out content
deltas; no library says when each argument of a call is final. The arguments go through the
shared incremental JSON scanner, the framing is one regex search per delta, and only what may
still become a special token (or a header, at most 512 characters) waits. Example::

    >>> p = HarmonyParser(id_prefix="d")
    >>> evs = p.feed('<|channel|>analysis<|message|>Search.<|end|><|start|>assistant'
    ...              '<|channel|>commentary to=functions.search <|constrain|>json<|message|>')
    >>> [type(e).__name__ for e in evs], p.reasoning
    (['CallStarted'], 'Search.')
    >>> [type(e).__name__ for e in p.feed('{"q": "x", "k": 3}<|call|>') + p.close()]
    ['FieldDone', 'FieldDone', 'CallDone', 'StreamDone']
"""

from __future__ import annotations

import re
from typing import Unpack

from ..events import CallMalformed
from .assembler import CallAssembler
from .base import ParserBase, ParserOptions, tag_prefix_at_end

__all__ = ["HarmonyParser"]

_START, _MESSAGE = "<|start|>", "<|message|>"
_ENDS = ("<|end|>", "<|call|>", "<|return|>", _START)
_BODY_STOP = re.compile(r"<\|(?:end|call|return|start)\|>")
_HEAD_STOP = re.compile(r"<\|(?:message|end|call|return|start)\|>")
_FIRST = ("<|channel|>", " to=", _MESSAGE)     # an output that opens inside the first header
_HEAD_TOKEN = re.compile(r"\s*(<\|[a-z_]+\|>|[^\s<]+|<)")
_PEEK = re.compile(r"(?:^|\s)to=([^\s<]*)(?=\s|<)")
_FUNC = "functions."
_MAX_HEAD = 512
_HOLD = len(_MESSAGE)         # the longest special token that ends a header or a message
_OPENING, _OUTSIDE, _HEAD, _BODY = range(4)
_TEXT, _REASON, _CALL, _DROP = range(4)


def _parse_header(head: str) -> tuple[str | None, str | None, str | None]:
    """``(error, channel, recipient)`` of a header (the text between ``<|start|>`` and
    ``<|message|>``).

    >>> _parse_header("assistant<|channel|>commentary to=functions.f <|constrain|>json")
    (None, 'commentary', 'functions.f')
    """
    toks: list[str] = []
    pos = 0
    while m := _HEAD_TOKEN.match(head, pos):
        toks.append(m.group(1))
        pos = m.end()
    if not toks or toks[0] != "assistant":
        got = toks[0] if toks else ""
        return f"message header: expected the role 'assistant', got {got[:40]!r}", None, None
    channel = recipient = ctype = None
    i = 1
    while i < len(toks):
        t = toks[i]
        word = toks[i + 1] if i + 1 < len(toks) and not toks[i + 1].startswith("<") else None
        if t in ("<|channel|>", "<|constrain|>"):
            if word is None or (channel if t == "<|channel|>" else ctype) is not None:
                return f"message header: bad or repeated {t}", None, None
            if t == "<|channel|>":
                channel = word
            else:
                ctype = word
            i += 2
            continue
        if t.startswith("to="):
            if not t[3:] or recipient not in (None, t[3:]):
                return f"message header: bad or second recipient {t[:60]!r}", None, None
            recipient = t[3:]
        elif t.startswith("<") or ctype is not None:
            return f"message header: unexpected {t[:40]!r}", None, None
        else:
            ctype = t
        i += 1
    return None, channel, recipient


class HarmonyParser(ParserBase):
    """Parse gpt-oss harmony output: ``functions.*`` tool calls, text, and reasoning.

    :attr:`reasoning` holds the ``analysis`` messages' content, one message per line (as
    vLLM's ``reasoning`` field joins them); it is never emitted as ``Text``. Keywords: see
    :class:`~conveyor_integrations.parsing.base.ParserBase`.

    >>> p = HarmonyParser(id_prefix="d")
    >>> [e.reason for e in p.feed('<|channel|>commentary to=python code<|message|>1<|call|>')]
    ["recipient 'python' is not a function (functions.NAME): built-in tools are not run"]
    """

    def __init__(self, **options: Unpack[ParserOptions]) -> None:
        super().__init__(**options)
        self._state, self._kind = _OPENING, _TEXT
        self._hold = self._head = self._carry = ""
        self._call: CallAssembler | None = None
        self._reasoning: list[str] = []
        self._fresh = False

    @property
    def reasoning(self) -> str:
        """The reasoning (``analysis`` content) so far: non-empty messages joined by ``"\\n"``."""
        parts = self._reasoning
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    def _feed_text(self, text: str) -> None:
        if self._hold:
            text = self._hold + text
            self._hold = ""
        pos, n = 0, len(text)
        while pos < n:
            state = self._state
            if state == _BODY:
                pos = self._body(text, pos)
            elif state == _HEAD:
                pos = self._header(text, pos)
                if self._carry:              # an overlong header: its tail is scanned again
                    text, pos, self._carry = self._carry + text[pos:], 0, ""
                    n = len(text)
            elif state == _OUTSIDE:
                i = text.find(_START, pos)
                if i >= 0:
                    self._text(text[pos:i])
                    self._state, pos = _HEAD, i + len(_START)
                    continue
                j = tag_prefix_at_end(text, pos, _START)
                end = j if j >= 0 else n
                self._hold = text[end:]
                self._text(text[pos:end] if pos or end < n else text)
                pos = n
            else:                                # the start of the output
                rest = text[pos:pos + 12]
                if rest.startswith(_START):
                    self._state, pos = _HEAD, pos + len(_START)
                elif rest.startswith(_FIRST):
                    self._state, self._head = _HEAD, "assistant"   # the prompt's role
                elif len(rest) < 12 and any(t.startswith(rest) for t in (*_FIRST, _START)):
                    self._hold, pos = rest, n
                else:
                    self._state = _OUTSIDE

    # -- headers ---------------------------------------------------------------------------

    def _header(self, text: str, pos: int) -> int:
        old = len(self._head)
        piece = text[pos:pos + _MAX_HEAD + _HOLD - old]
        h = self._head + piece
        m = _HEAD_STOP.search(h, max(0, old - _HOLD))
        if m is not None:
            self._head = ""
            self._peek(h[:m.start() + 1])
            self._end_header(h[:m.start()], m.group())
            return pos + m.end() - old
        if len(h) > _MAX_HEAD:
            self._head = ""
            self._malformed(f"message header longer than {_MAX_HEAD} characters "
                            "(no <|message|>)", None)
            self._state, self._kind, self._carry = _BODY, _DROP, h[-_HOLD:]
            return pos + len(piece)
        self._head = h
        self._peek(h)
        return pos + len(piece)

    def _peek(self, head: str) -> None:
        """Start the call as soon as its recipient is complete, before the header is."""
        if self._call is None and (p := _PEEK.search(head)) is not None:
            self._open_call(p.group(1))

    def _open_call(self, recipient: str) -> None:
        if recipient.startswith(_FUNC) and len(recipient) > len(_FUNC) and self._call is None:
            index = self._next_index()
            self._call = CallAssembler(self, index, self.new_id(index),
                                       name=recipient[len(_FUNC):])

    def _malformed(self, reason: str, name: str | None) -> None:
        if self._call is not None:
            self._call.fail(reason)
        else:
            index = self._next_index()
            self._emit(CallMalformed(index, self.new_id(index), name, reason))

    def _end_header(self, head: str, tag: str) -> None:
        error, channel, recipient = _parse_header(head)
        if recipient is not None and error is None:
            self._open_call(recipient)
        if tag != _MESSAGE:
            error = f"message header without <|message|> (ended by {tag})"
        elif error is None and recipient is not None and self._call is None:
            error = (f"recipient {recipient[:60]!r} is not a function (functions.NAME): "
                     "built-in tools are not run")
        if error is not None:
            self._malformed(error, recipient)
            self._call = None
            if tag != _MESSAGE:
                self._state = _HEAD if tag == _START else _OUTSIDE
                return
            self._kind = _DROP
        elif self._call is not None:
            self._kind = _CALL
        elif channel == "analysis":
            self._kind, self._fresh = _REASON, True
        else:
            self._kind = _TEXT
        self._state = _BODY

    # -- message content -------------------------------------------------------------------

    def _body(self, text: str, pos: int) -> int:
        m = _BODY_STOP.search(text, pos)
        if m is not None:
            self._content(text[pos:m.start()])
            self._end_body(m.group())
            return m.end()
        n = len(text)
        j = max(tag_prefix_at_end(text, pos, tag) for tag in _ENDS)
        end = j if j >= 0 else n
        self._hold = text[end:]
        self._content(text[pos:end] if pos or end < n else text)
        return n

    def _content(self, s: str) -> None:
        if not s:
            return
        kind = self._kind
        if kind == _TEXT:
            self._text(s)
        elif kind == _REASON:
            if self._fresh and self._reasoning:     # one line per (non-empty) message
                self._reasoning.append("\n")
            self._fresh = False
            self._reasoning.append(s)
        elif kind == _CALL:
            call = self._call
            assert call is not None
            if call.finished:
                return
            if not call.scanner.done:
                s = s[call.feed(s):]
            if not call.finished and call.scanner.done and s.strip(" \t\r\n"):
                call.fail("unexpected text after the arguments JSON")

    def _end_body(self, tag: str) -> None:
        call = self._call
        if self._kind == _CALL and call is not None and not call.finished:
            if tag == _START:
                call.fail("missing <|call|>: a new message began")
            elif call.scanner.done or call.scanner.untouched:
                call.finish(empty_is_ok=True)
            else:
                call.fail(f"arguments JSON incomplete at {tag}")
        self._call = None
        self._state = _HEAD if tag == _START else _OUTSIDE

    def _close(self) -> None:
        hold, self._hold = self._hold, ""
        state, call = self._state, self._call
        if state in (_OPENING, _OUTSIDE) or (state == _BODY and self._kind == _TEXT):
            self._text(hold)
        elif state == _BODY and self._kind == _REASON:
            self._content(hold)
        elif call is not None and not call.finished:
            call.fail("truncated call: " + ("no <|message|>" if state == _HEAD else
                                            "no <|call|>" if call.scanner.done else
                                            "arguments JSON incomplete, no <|call|>"))
        elif state == _HEAD and "to=" in self._head:
            self._malformed("truncated message header (no <|message|>)", None)
        self._call = None
