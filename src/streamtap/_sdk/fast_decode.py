"""Fast decoding (`fast_decode=True`): stream items built by pydantic-core instead of the SDK's
pure-Python `construct_type`, indistinguishable from the SDK's own, event by event.

**The seam.** The SDK's `Stream.__stream__` (openai 1.x, 2.x and 3.x alike) reads
`self._client._process_response_data` once, when iteration starts, and calls it with each
event's JSON (already `json.loads`-ed) after it has dealt with `[DONE]`, in-band `error` keys,
Assistants `thread.*` events and the end of the body. `install` gives the stream a stand-in for
its client whose `_process_response_data` validates that dict with a pydantic-core validator, and
hands anything the validator refuses to the SDK's own method (`_DecodingClient`). So everything
but the decoding of a well-formed item stays the SDK's code: exceptions, closing, draining.

**The validator mirrors `construct_type`** (`_Mirror`), branch for branch, for one target type:

- an SDK model (a subclass of openai's `BaseModel` that keeps its `construct`): a model schema
  that fills `__dict__` in field order, null or missing fields with the field's default,
  `__pydantic_fields_set__` with the keys sent (extra keys not included, as `construct` does on
  pydantic 2), `__pydantic_extra__` with the extra keys' raw values;
- a union (`Optional[X]` included): the SDK validates these with pydantic (`validate_type`, lax
  mode, Python input) before anything else, so the mirror embeds that very TypeAdapter schema;
  a union of models each with its own `type: Literal[...]` (the Responses API's events) as a
  union tagged by `type`, which gives the smart union's result wherever it succeeds
  (`_tagged_by_type`);
- `List[X]`, `Dict[str, X]`: the same containers of mirrored items;
- any other type: the raw value (the same object), where `construct_type` returns it unchanged
  for every kind of JSON value (probed once per type); else `construct_type` itself is called
  for that value (`float` on openai 3.x turns an integral int into a float, `datetime`, ...).

Whatever the mirror cannot reproduce makes validation fail, and that event is decoded by the SDK
itself: a value `construct_type` would keep although it does not fit (an unknown finish reason,
a string where a model belongs, a null `delta`), an extra key starting with `_` (the SDK's
`construct(**value)` treats `_fields_set` specially), a top level that is not a JSON object.
A type the mirror does not cover at all (aliased fields, bare `Dict`/`List`, generic models,
another `construct`) gets no fast decoder: its streams are decoded by the SDK alone. Every
validator is checked once against `construct_type` on probe items before it is used (`_check`).

pydantic 1 (openai 1.x allows it): no pydantic-core, so the option does nothing; a warning says
so once per process.
"""

from __future__ import annotations

import logging
import threading
import types
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .._errors import internal_error
from .pydantic_compat import PYDANTIC_V1

if TYPE_CHECKING:
    from .._core.state import StreamState

logger = logging.getLogger("streamtap")

Validate = Callable[[Any], Any]

# target type -> its validator's `validate_python`, or None (no fast decoding for that type)
_decoders: dict[Any, Validate | None] = {}
_lock = threading.Lock()
_warned_v1 = False


def decoder(cast_to: Any) -> Validate | None:
    """The fast decoder for items of type `cast_to` (built once per type), or None."""
    try:
        return _decoders[cast_to]
    except KeyError:
        pass
    except TypeError:  # an unhashable type: nothing to cache, nothing fast
        return None
    with _lock:
        if cast_to not in _decoders:
            _decoders[cast_to] = _build(cast_to)
        return _decoders[cast_to]


def prepare() -> None:
    """At `instrument(fast_decode=True)`: say now if the option cannot work here, and build the
    chat chunk and Responses event decoders off the first stream's path."""
    if _unavailable():
        return
    from openai.types.chat import ChatCompletionChunk

    decoder(ChatCompletionChunk)
    try:
        from openai.types.responses import ResponseStreamEvent
    except ImportError:  # an openai 1.x without the Responses API
        return
    decoder(ResponseStreamEvent)


def _unavailable() -> bool:
    global _warned_v1
    if not PYDANTIC_V1:
        return False
    if not _warned_v1:
        _warned_v1 = True
        logger.warning(
            "streamtap: fast_decode needs pydantic 2 (pydantic-core); with pydantic 1 every "
            "stream is decoded by the openai SDK itself"
        )
    return True


def install(stream: Any, state: StreamState | None = None) -> _DecodingClient | None:
    """Make the SDK decode this (not yet iterated) stream's items fast, where it can.

    Returns the stand-in client (its `fallbacks` counts the events the SDK decoded itself, and
    so does `state.decode_fallbacks`, for the summary), or None where fast decoding does not
    apply: pydantic 1, a client that validates responses strictly or decodes them its own way,
    an item type the mirror does not cover.
    """
    if _unavailable():
        return None
    client = getattr(stream, "_client", None)
    cast_to = getattr(stream, "_cast_to", None)
    if client is None or cast_to is None or isinstance(client, _DecodingClient):
        return None
    if getattr(client, "_strict_response_validation", True) or not _sdk_decoding(client):
        return None
    validate = decoder(cast_to)
    if validate is None:
        return None
    shim = _DecodingClient(client, cast_to, validate, state)
    try:
        stream._client = shim
    except AttributeError:  # a stream class with __slots__
        return None
    if state is not None and state.decode_fallbacks is None:
        state.decode_fallbacks = 0
    return shim


def install_quietly(stream: Any, state: StreamState) -> None:
    """`install`, reporting a failure as streamtap's own (the stream is then decoded by the SDK)."""
    try:
        install(stream, state)
    except Exception as exc:
        internal_error("installing fast decoding", exc)


def _sdk_decoding(client: Any) -> bool:
    """The client decodes stream items with the SDK's own `_process_response_data`, not
    patched on the instance or on any class (another library's hook is left in charge)."""
    if "_process_response_data" in getattr(client, "__dict__", {}):
        return False
    for cls in type(client).__mro__:
        method = cls.__dict__.get("_process_response_data")
        if method is not None:
            return (
                type(method) is types.FunctionType
                and method.__module__ == "openai._base_client"
                and method.__qualname__.endswith("._process_response_data")
            )
    return False


class _DecodingClient:
    """Stands in for a stream's client inside the SDK's `__stream__`: every attribute is the
    client's, but `_process_response_data` tries the fast decoder first."""

    __slots__ = ("_cast_to", "_client", "_sdk", "_state", "_validate", "fallbacks")

    def __init__(
        self, client: Any, cast_to: Any, validate: Validate, state: StreamState | None
    ) -> None:
        self._client = client
        self._cast_to = cast_to
        self._validate = validate
        self._sdk = client._process_response_data
        self._state = state
        self.fallbacks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _process_response_data(self, *, data: Any, cast_to: Any, response: Any) -> Any:
        if cast_to is self._cast_to and type(data) is dict:
            try:
                return self._validate(data)
            except Exception:  # not what the mirror reproduces: the SDK decodes this one
                self.fallbacks += 1
                if self._state is not None and self._state.decode_fallbacks is not None:
                    self._state.decode_fallbacks += 1
        return self._sdk(data=data, cast_to=cast_to, response=response)


# -- building a validator ----------------------------------------------------------------------


class Unsupported(Exception):
    """A type the mirror does not reproduce (no fast decoding for it)."""


def _build(cast_to: Any) -> Validate | None:
    try:
        mirror = _Mirror()
        validate = mirror.validator(cast_to)
        mirror.check(cast_to, validate)
    except Unsupported as why:
        logger.debug("streamtap: no fast decoding for %r: %s", cast_to, why)
        return None
    except Exception as exc:
        internal_error("building a fast decoder", exc)
        return None
    return validate


# Values of every JSON kind, to find the types `construct_type` returns unchanged.
_PROBES: tuple[Any, ...] = (
    *(0, 1, -7, 2**70, 1.5, -0.0, True, False, None, [1], {"a": 1}),
    *("", "5", "1.5", "x", "true", "2024-01-02", "2024-01-02T03:04:05Z", "12:00:00"),
)


def _constructor(cls: Any) -> Callable[[tuple[Any, Any, Any]], Any]:
    """What `cls.construct(**value)` does with the decoded fields: a new instance, its state set
    as openai's `construct` sets it on pydantic 2 (extra keys are not in the fields set).

    (Not pydantic-core's own model schema: for a class pydantic has finished building, it uses
    the class's validator, with pydantic's validation rules, instead of the given schema.)"""
    new = cls.__new__
    put = object.__setattr__

    def construct(fields: tuple[Any, Any, Any]) -> Any:
        values, extra, fields_set = fields
        if extra:
            for key in extra:
                if key[:1] == "_":
                    # `_fields_set` (and the name-mangled class argument) are construct()'s
                    # own keyword arguments: the SDK decodes such an item
                    raise ValueError("an extra key that construct() may take for its own")
            fields_set.difference_update(extra)
        m = new(cls)
        put(m, "__dict__", values)
        put(m, "__pydantic_private__", None)
        put(m, "__pydantic_extra__", extra)
        put(m, "__pydantic_fields_set__", fields_set)
        return m

    return construct


class _Mirror:
    """Builds a pydantic-core schema that decodes a JSON value as `construct_type` does."""

    def __init__(self) -> None:
        from openai import _models

        self.m: Any = _models
        self.definitions: dict[str, Any] = {}
        self.models: list[type] = []  # the models built by the mirror (not by pydantic)

    def validator(self, cast_to: Any) -> Validate:
        from pydantic_core import SchemaValidator, core_schema

        top = self.schema(cast_to)
        schema = core_schema.definitions_schema(top, list(self.definitions.values()))
        validate: Validate = SchemaValidator(schema).validate_python
        return validate

    def schema(self, type_: Any, metadata: Any = None) -> Any:
        """`construct_type(value=..., type_=type_, metadata=metadata)`, branch for branch."""
        from pydantic import TypeAdapter
        from pydantic_core import core_schema

        m = self.m  # (openai._models has the helpers construct_type uses, under these names)
        original = None
        is_alias = getattr(m, "is_type_alias_type", None)  # (not in older 1.x releases)
        if is_alias is not None and is_alias(type_):
            original = type_
            type_ = type_.__value__
        if not (metadata is not None and len(metadata) > 0) and m.is_annotated_type(type_):
            type_ = m.extract_type_arg(type_, 0)
        origin = m.get_origin(type_) or type_
        args = m.get_args(type_)
        if m.is_union(origin):
            # The SDK tries pydantic's lax validation first; the mirror only ever succeeds
            # where that does (its fallbacks are the SDK's business).
            adapter = TypeAdapter(original or type_)
            if getattr(adapter, "_config", None) is not None:
                raise Unsupported(f"a TypeAdapter with a config for {type_!r}")
            return _tagged_by_type(adapter.core_schema, args, m) or adapter.core_schema
        if origin == dict:  # noqa: E721  (construct_type compares with ==)
            if len(args) != 2:
                raise Unsupported("a bare Dict")
            return core_schema.dict_schema(core_schema.any_schema(), self.schema(args[1]))
        if not m.is_literal_type(type_) and _isclass(origin):
            if issubclass(origin, m.BaseModel):
                if type_ is not origin:
                    raise Unsupported(f"the generic model {type_!r}")
                return self.model(type_)
            if issubclass(origin, m.GenericModel):
                raise Unsupported(f"the generic model {type_!r}")
        if origin == list:  # noqa: E721
            if len(args) != 1:
                raise Unsupported("a bare List")
            return core_schema.list_schema(self.schema(args[0]))
        return self.leaf(type_, origin)

    def leaf(self, type_: Any, origin: Any) -> Any:
        """A type `construct_type` has no container branch for: the raw value where it returns
        every JSON value unchanged, else `construct_type` itself (float, datetime, date, and
        whatever a release of the SDK may convert that the probes show)."""
        from pydantic_core import core_schema

        construct = self.m.construct_type
        if origin == float or type_ in (datetime, date):  # noqa: E721
            raw = False
        else:
            try:
                raw = all(construct(value=p, type_=type_) is p for p in _PROBES)
            except Exception:
                raw = False
        if raw:
            return core_schema.any_schema()

        def construct_leaf(value: Any) -> Any:
            return construct(value=value, type_=type_)

        return core_schema.no_info_plain_validator_function(construct_leaf)

    def model(self, cls: type) -> Any:
        """`cls.construct(**value)` (openai's `BaseModel.construct`)."""
        from pydantic_core import core_schema

        ref = f"streamtap:{cls.__module__}.{cls.__qualname__}:{id(cls)}"
        if ref not in self.definitions:
            self.definitions[ref] = None  # (a model that contains itself refers to the ref)
            self.definitions[ref] = self._model_schema(cls, ref)
            self.models.append(cls)
        return core_schema.definition_reference_schema(ref)

    def _model_schema(self, cls: Any, ref: str) -> Any:
        from pydantic_core import core_schema

        m = self.m
        if _construct_of(cls) is not _construct_of(m.BaseModel):
            raise Unsupported(f"{cls.__name__} has its own construct()")
        if getattr(cls, "__pydantic_root_model__", False):
            raise Unsupported(f"{cls.__name__} is a root model")
        extra_types = getattr(m, "_get_extra_fields_type", None)  # (not in older 1.x releases)
        extra_type = extra_types(cls) if extra_types is not None else None
        fields = {}
        for name, field in m.get_model_fields(cls).items():
            if field.alias is not None and field.alias != name:
                # construct() reads the alias and keeps it as an extra field as well
                raise Unsupported(f"{cls.__name__}.{name} has an alias")
            fields[name] = core_schema.model_field(self._field(field))
        inner = core_schema.model_fields_schema(
            fields,
            model_name=cls.__name__,
            extra_behavior="allow",
            extras_schema=(
                core_schema.any_schema() if extra_type is None else self.schema(extra_type)
            ),
        )
        return core_schema.no_info_after_validator_function(_constructor(cls), inner, ref=ref)

    def _field(self, field: Any) -> Any:
        """`_construct_field`: null gives the default; else `construct_type` of the value."""
        from pydantic_core import core_schema

        if field.annotation is None:
            raise Unsupported("a field without a type")
        inner = self.schema(field.annotation, getattr(field, "metadata", None))
        default = self.m.field_get_default(field)
        if default is None:
            return core_schema.with_default_schema(core_schema.nullable_schema(inner), default=None)
        get_default = self.m.field_get_default

        def null_is_default(value: Any, handler: Any) -> Any:
            return get_default(field) if value is None else handler(value)

        return core_schema.with_default_schema(
            core_schema.no_info_wrap_validator_function(null_is_default, inner),
            default_factory=lambda: get_default(field),
        )

    def check(self, cast_to: Any, validate: Validate) -> None:
        """Compare the mirror with `construct_type` on probe items (every model the mirror
        builds: nulls everywhere, an extra field, nothing at all), once per type."""
        construct = self.m.construct_type
        for item in self._probe_items(cast_to):
            try:
                fast = validate(item)
            except Exception:
                continue  # refused: the SDK decodes it
            slow = construct(value=item, type_=cast_to)
            difference = first_difference(fast, slow)
            if difference is not None:
                raise Unsupported(f"the mirror differs from construct_type at {difference}")

    def _probe_items(self, cast_to: Any) -> Iterator[dict[str, Any]]:
        yield {}
        if cast_to in self.models:
            fields = self.m.get_model_fields(cast_to)
            yield {name: None for name in fields}
            yield {**{name: None for name in fields}, "streamtap_probe": [1, {"a": 2.0}]}


def _tagged_by_type(schema: Any, members: tuple[Any, ...], m: Any) -> Any:
    """pydantic's schema for a union of models told apart by a `type: Literal[...]` field (the
    Responses API's events), as a union tagged by that field: one member tried instead of ~60.

    The same result wherever it succeeds: pydantic's smart union returns the one member that
    validates, and a member whose `type` Literal does not hold the value cannot validate; so
    the tag's member is that one, validated by the same schema. Where the tag is unknown or
    its member refuses the value, both fail and the SDK decodes the event itself (for an
    unknown `type`, `construct_type` builds the first member). None where a member has no
    such field (read under its own name), or two members share a tag."""
    from pydantic_core import core_schema

    union = schema["schema"] if schema.get("type") == "definitions" else schema
    if union.get("type") != "union" or set(union) - {"type", "choices", "metadata"}:
        return None
    choices = [c[0] if isinstance(c, tuple) else c for c in union["choices"]]
    if len(choices) != len(members):
        return None
    tagged: dict[str, Any] = {}
    for member, choice in zip(members, choices):
        tags = _type_tags(member, m)
        if not tags or any(tag in tagged for tag in tags):
            return None
        for i, tag in enumerate(tags):
            # (a schema with a ref appears once; the member's other tags refer to it)
            ref = choice.get("ref") if i else None
            tagged[tag] = core_schema.definition_reference_schema(ref) if ref else choice
    by_type = core_schema.tagged_union_schema(tagged, discriminator="type")
    if union is schema:
        return by_type
    return {**schema, "schema": by_type}


def _type_tags(member: Any, m: Any) -> tuple[str, ...]:
    """The values a model member's `type` field takes (its Literal), or () if not so."""
    if not (_isclass(member) and issubclass(member, m.BaseModel)):
        return ()
    field = m.get_model_fields(member).get("type")
    if field is None or field.alias not in (None, "type"):
        return ()
    if getattr(field, "validation_alias", None) not in (None, "type"):
        return ()
    if not m.is_literal_type(field.annotation):
        return ()
    tags = m.get_args(field.annotation)
    if not all(type(tag) is str for tag in tags):
        return ()
    return tuple(tags)


def _isclass(obj: Any) -> bool:
    return isinstance(obj, type)


def _construct_of(cls: Any) -> Any:
    method = getattr(cls, "construct", None)
    return getattr(method, "__func__", method)


def first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where two decoded items differ (class, model state, value and value type), or None."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} vs {list(b)}"
        for key in a:
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    state = getattr(type(a), "__pydantic_fields__", None)
    if state is not None:
        for slot in ("__pydantic_fields_set__", "__pydantic_private__"):
            if getattr(a, slot, None) != getattr(b, slot, None):
                return f"{path}: {slot}"
        for slot in ("__dict__", "__pydantic_extra__"):
            found = first_difference(getattr(a, slot, None), getattr(b, slot, None), path + slot)
            if found is not None:
                return found
        return None
    if a != b and not (a != a and b != b):  # (NaN equals NaN here)
        return f"{path}: {a!r} vs {b!r}"
    return None
