"""Raw-text tool arguments converted by the tool's JSON schema (``qwen3_xml``, ``glm45``).

Formats that write argument values as raw text (Qwen3-Coder's ``<parameter=...>``, GLM's
``<arg_value>``) lose the value's JSON type; the tool's schema gives it back. A parameter's
schema allows a set of type names (:func:`schema_types`: ``type`` and ``anyOf``/``oneOf``),
and :func:`convert_value` reads the text as the first of them it fits, in :data:`TYPE_ORDER`:
``null``/``None``, an integer, a finite number, ``true``/``false`` (any case), an object or
array (``json.loads``, else ``ast.literal_eval``, kept only when JSON-able), else the text
itself when ``string`` is allowed. Example::

    >>> convert_value("[1, 'a']", schema_types({"type": ["array", "null"]}))
    [1, 'a']
    >>> convert_value("x", schema_types({"type": "integer"})) is INVALID
    True
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["INVALID", "TYPE_ORDER", "convert_value", "schema_types"]

_INT = re.compile(r"[-+]?[0-9]+")
_NUM = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
TYPE_ORDER: tuple[str, ...] = ("null", "integer", "number", "boolean", "object", "array",
                               "string")
"""The JSON-schema type names known here, in the order a value is tried against them."""
_KNOWN = frozenset(TYPE_ORDER)
INVALID: Any = object()
"""What :func:`convert_value` returns for text that fits none of the allowed types."""


def schema_types(schema: Any) -> frozenset[str]:
    """The known JSON-schema type names ``schema`` allows (``type`` and anyOf/oneOf).

    >>> sorted(schema_types({"anyOf": [{"type": "integer"}, {"type": ["null", "date"]}]}))
    ['integer', 'null']
    """
    if not isinstance(schema, Mapping):
        return frozenset()
    t = schema.get("type")
    out = {t} if isinstance(t, str) else {x for x in t if isinstance(x, str)} \
        if isinstance(t, list) else set()
    for key in ("anyOf", "oneOf"):
        for alt in schema.get(key) or ():
            out |= schema_types(alt)
    return frozenset(out) & _KNOWN


def _structured(s: str, kind: type) -> Any:
    for load in (json.loads, ast.literal_eval):
        try:
            value = load(s)
            if isinstance(value, kind):   # JSON-able: tuples become lists, sets/bytes fail
                return json.loads(json.dumps(value, allow_nan=False))
        except Exception:  # noqa: BLE001, S112 - any failure means "not this type"
            continue
    return INVALID


def convert_value(raw: str, types: frozenset[str]) -> Any:
    """``raw`` as the first of ``types`` it fits (in ``TYPE_ORDER``), else ``INVALID``; no
    types: ``raw``.

    >>> convert_value(" 42 ", frozenset({"integer"})), convert_value("True", frozenset({"boolean"}))
    (42, True)
    """
    s = raw.strip()
    low = s.lower() if len(s) < 8 else ""
    if "null" in types and low in ("null", "none"):
        return None
    if types & {"integer", "number"} and len(s) < 4000 and _INT.fullmatch(s):
        return int(s)
    if "number" in types and len(s) < 4000 and _NUM.fullmatch(s) and math.isfinite(f := float(s)):
        return f
    if "boolean" in types and low in ("true", "false"):
        return low == "true"
    for t, kind in (("object", dict), ("array", list)):
        if t in types and (value := _structured(s, kind)) is not INVALID:
            return value
    return raw if "string" in types or not types else INVALID
