"""The Validation tool: check each field of a call as soon as it is final; stop decoding at the
first invalid one.

:class:`ValidateExecution` is fed ``FieldDone`` for each top-level field and ``ItemDone`` for each
element of a top-level list, and checks it against a pydantic model (one field at a time with
``Model.__pydantic_validator__.validate_assignment`` on a ``model_construct()``-ed instance, so
field constraints and field validators apply; list items with a ``TypeAdapter`` of the item type),
a JSON Schema (with ``jsonschema``, on the field's sub-schema in ``properties``, or its
``items``), and/or a function ``check(path, value) -> str | None``. At the first invalid part it
raises :class:`InvalidArguments` (an :class:`~conveyor_integrations.errors.EarlyAbort`) naming the
field, so the model stops writing a record that will be rejected anyway.

What only the whole object can tell (a missing required field, extra fields, model validators,
``info.data`` of other fields, list length limits on items) is checked by ``finish``, which
validates the complete arguments exactly as :func:`validation_errors` does. The first error found
early is always one that complete validation reports too, and a valid object passes both ways.

Hand-written glue only: pydantic and jsonschema do all the validating; they have no notion of
validating one field of an object that is still being written. Example::

    >>> from pydantic import BaseModel, Field
    >>> class Person(BaseModel):
    ...     name: str
    ...     age: int = Field(gt=0)
    >>> validation_errors({"name": "Ada", "age": -1}, model=Person)
    ['age: Input should be greater than 0']
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import EarlyAbort
from ..events import CallStarted, FieldDone, ItemDone, JSONPath, TextChunk
from ..partial import partial_tool

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["Check", "InvalidArguments", "ValidateExecution", "validated_tool",
           "validation_errors"]

Check = Callable[[JSONPath, Any], "str | None"]
"""A user check: ``check(("age",), -1) -> "must be positive"``, or None when the value is fine."""


class InvalidArguments(EarlyAbort):
    """The arguments are invalid; ``errors`` are ``"path: message"`` strings."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid arguments: " + "; ".join(errors))
        self.errors = errors


_log = logging.getLogger("conveyor_integrations")
_NOT_FIELD_ERRORS = ("frozen_instance", "frozen_field")


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def _pydantic(exc: ValidationError, prefix: JSONPath = ()) -> list[str]:
    return [f"{_where(prefix + tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]


class _Validators:
    """The configured validators, each able to check the whole object or one part of it."""

    def __init__(self, model: type[BaseModel] | None, schema: Mapping[str, Any] | None,
                 check: Check | None) -> None:
        self.model, self.check = model, check
        self.json: Any = None
        if schema is not None:
            jsonschema = importlib.import_module("jsonschema")   # untyped: imported as Any
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self.json = cls(schema)
        self._fields: dict[str, str] = {}         # JSON key -> field name
        self._items: dict[str, TypeAdapter[Any] | None] = {}
        if model is not None:
            for name, info in model.model_fields.items():
                self._fields[info.alias or name] = name
                ann, limited = info.annotation, any(
                    hasattr(m, "max_length") or hasattr(m, "min_length") for m in info.metadata)
                item = get_args(ann)[0] if get_origin(ann) is list and get_args(ann) else None
                self._items[info.alias or name] = (
                    TypeAdapter(item) if item is not None and not limited else None)

    def whole(self, args: Mapping[str, Any]) -> list[str]:
        errors: list[str] = []
        if self.model is not None:
            try:
                self.model.model_validate(dict(args))
            except ValidationError as exc:
                errors += _pydantic(exc)
        if self.json is not None:
            errors += [f"{_where(tuple(e.absolute_path))}: {e.message}"
                       for e in self.json.iter_errors(dict(args))]
        if self.check is not None:
            for key, value in args.items():
                if isinstance(value, list):
                    for i, item in enumerate(value):
                        errors += self._user((key, i), item)
                errors += self._user((key,), value)
        return errors

    def _user(self, path: JSONPath, value: Any) -> list[str]:
        assert self.check is not None
        msg = self.check(path, value)
        return [] if msg is None else [f"{_where(path)}: {msg}"]

    def field(self, key: str, value: Any) -> list[str]:
        errors: list[str] = []
        name = self._fields.get(key)
        if self.model is not None and name is not None:
            try:
                self.model.__pydantic_validator__.validate_assignment(
                    self.model.model_construct(), name, value)
            except ValidationError as exc:      # keep only errors about this field
                errors += [f"{_where((key,) + tuple(e['loc'])[1:])}: {e['msg']}"
                           for e in exc.errors()
                           if e["loc"][:1] == (name,) and e["type"] not in _NOT_FIELD_ERRORS]
            except Exception:  # noqa: BLE001 - a model validator needing other fields: finish
                _log.debug("field %r can only be validated with the whole object", key,
                           exc_info=True)
        sub = self._sub(key)
        if sub is not None:
            errors += [f"{_where((key,) + tuple(e.absolute_path))}: {e.message}"
                       for e in self.json.evolve(schema=sub).iter_errors(value)]
        if self.check is not None:
            errors += self._user((key,), value)
        return errors

    def item(self, key: str, i: int, value: Any) -> list[str]:
        errors: list[str] = []
        adapter = self._items.get(key)
        if adapter is not None:
            try:
                adapter.validate_python(value)
            except ValidationError as exc:
                errors += _pydantic(exc, (key, i))
        sub = self._sub(key)
        items = sub.get("items") if isinstance(sub, Mapping) else None
        if isinstance(items, (Mapping, bool)):
            errors += [f"{_where((key, i) + tuple(e.absolute_path))}: {e.message}"
                       for e in self.json.evolve(schema=items).iter_errors(value)]
        if self.check is not None:
            errors += self._user((key, i), value)
        return errors

    def _sub(self, key: str) -> Any:
        if self.json is None or not isinstance(self.json.schema, Mapping):
            return None
        return (self.json.schema.get("properties") or {}).get(key)


def validation_errors(args: Mapping[str, Any], *, model: type[BaseModel] | None = None,
                      schema: Mapping[str, Any] | None = None,
                      check: Check | None = None) -> list[str]:
    """Every error of the complete arguments, as ``"path: message"`` strings (model first, then
    schema, then ``check``); empty when they are valid."""
    return _Validators(model, schema, check).whole(args)


class ValidateExecution:
    """Validates each top-level field and list item as it becomes final.

    A :class:`~conveyor_integrations.partial.PartialExecution`; ``run`` (optional) is called on
    the complete, valid arguments and its value is the tool's result::

        partial_tool(save, execution=lambda: ValidateExecution(run=save_args, model=Person))
    """

    def __init__(self, run: Callable[[dict[str, Any]], Any] | None = None, *,
                 model: type[BaseModel] | None = None, schema: Mapping[str, Any] | None = None,
                 check: Check | None = None) -> None:
        if model is None and schema is None and check is None:
            raise TypeError("ValidateExecution needs a model, a schema or a check")
        self.run = run
        self._v = _Validators(model, schema, check)
        self.checked: list[JSONPath] = []
        """The parts validated early, in order."""

    async def start(self, call: CallStarted) -> None:
        return None

    async def feed(self, event: FieldDone | TextChunk | ItemDone) -> None:
        """Validate a final field or list item; raise :class:`InvalidArguments` if it is invalid."""
        if isinstance(event, FieldDone) and len(event.path) == 1:
            key = str(event.path[0])
            errors = self._v.field(key, event.value)
            self.checked.append((key,))
        elif isinstance(event, ItemDone) and len(event.path) == 1:
            key = str(event.path[0])
            errors = self._v.item(key, event.i, event.value)
            self.checked.append((key, event.i))
        else:
            return
        if errors:
            raise InvalidArguments(errors[:1])

    async def finish(self, args: dict[str, Any]) -> Any:
        """Validate the complete arguments; then the result of ``run`` on them (or ``args``)."""
        errors = self._v.whole(args)
        if errors:
            raise InvalidArguments(errors)
        if self.run is None:
            return args
        value = self.run(args)
        return await value if inspect.isawaitable(value) else value

    async def cancel(self) -> None:
        return None


def validated_tool(fn: Callable[..., Any], *, model: type[BaseModel] | None = None,
                   schema: Mapping[str, Any] | None = None, check: Check | None = None,
                   scheduler: Scheduler | None = None) -> Callable[..., Any]:
    """``fn`` as a partial tool that validates its arguments as they are decoded.

    Invoked directly it validates the complete arguments first (raising
    :class:`InvalidArguments`), then calls ``fn`` with them::

        >>> def save(name: str, age: int) -> str:
        ...     return f"saved {name}"
        >>> save = validated_tool(save, check=lambda path, v: "too young" if v == 0 else None)
        >>> save(name="Ada", age=36)
        'saved Ada'
    """
    validators = _Validators(model, schema, check)
    sig = inspect.signature(fn)

    def checked(args: dict[str, Any]) -> dict[str, Any]:
        errors = validators.whole(args)
        if errors:
            raise InvalidArguments(errors)
        return args

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_tool(*a: Any, **kw: Any) -> Any:
            return await fn(**checked(dict(sig.bind(*a, **kw).arguments)))
        tool: Callable[..., Any] = async_tool
    else:
        @functools.wraps(fn)
        def sync_tool(*a: Any, **kw: Any) -> Any:
            return fn(**checked(dict(sig.bind(*a, **kw).arguments)))
        tool = sync_tool

    async def run(args: dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(**args)
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(**args))

    def make() -> ValidateExecution:
        return ValidateExecution(run, model=model, schema=schema, check=check)

    return partial_tool(tool, execution=make, scheduler=scheduler)  # type: ignore[no-any-return]
