"""The one place that knows how pydantic 1 and 2 store a model's state.

The openai SDK runs on pydantic 2 or on pydantic 1.10 (openai 1.x to 3.x allow both). streamtap
reads and writes the SDK's models without validation, through what pydantic stores:

- pydantic 2: declared fields in `__dict__`, extra fields (`reasoning_content`, `x_groq`, ...)
  in `__pydantic_extra__`, the names the server sent in `__pydantic_fields_set__`;
- pydantic 1: declared and extra fields side by side in `__dict__`, the names sent (extra ones
  included) in `__fields_set__`.

Every accessor is chosen once, at import: on pydantic 2 they are C-level attribute getters, so a
caller pays no version test per chunk. The short path of `_chat.process_chunk` reads the
pydantic 2 attributes directly and is only used on pydantic 2 (see there).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pydantic

PYDANTIC_V1: bool = pydantic.VERSION.startswith("1.")

fields_set: Callable[[Any], set[str]]
"""The live set of field names the model was given (add to it when writing a field)."""
extras: Callable[[Any], dict[str, Any] | None]
"""The model's extra (undeclared) fields. Read only: pydantic 1 gives a copy."""
extra_store: Callable[[Any], dict[str, Any]]
"""The live dict an extra field is read from and written to (pydantic 1: `__dict__` itself,
shared with the declared fields, so only look up names that are not declared)."""


if PYDANTIC_V1:

    def _fields_set_v1(model: Any) -> set[str]:
        s: set[str] = model.__fields_set__
        return s

    def _extras_v1(model: Any) -> dict[str, Any] | None:
        declared = type(model).__fields__
        return {k: v for k, v in model.__dict__.items() if k not in declared}

    def _extra_store_v1(model: Any) -> dict[str, Any]:
        d: dict[str, Any] = model.__dict__
        return d

    def set_extra(model: Any, name: str, value: Any) -> None:
        """Write an extra field, as if the server had sent it."""
        model.__dict__[name] = value
        model.__fields_set__.add(name)

    def copy_model(model: Any, update: dict[str, Any]) -> Any:
        """A shallow copy of the model with some fields replaced (no validation)."""
        return model.copy(update=update)

    fields_set = _fields_set_v1
    extras = _extras_v1
    extra_store = _extra_store_v1

else:

    def _extra_store_v2(model: Any) -> dict[str, Any]:
        extra: dict[str, Any] | None = model.__pydantic_extra__
        if extra is None:
            extra = model.__pydantic_extra__ = {}
        return extra

    def set_extra(model: Any, name: str, value: Any) -> None:
        """Write an extra field, as if the server had sent it."""
        _extra_store_v2(model)[name] = value

    def copy_model(model: Any, update: dict[str, Any]) -> Any:
        """A shallow copy of the model with some fields replaced (no validation)."""
        return model.model_copy(update=update)

    fields_set = operator.attrgetter("__pydantic_fields_set__")
    extras = operator.attrgetter("__pydantic_extra__")
    extra_store = _extra_store_v2


def dump(model: Any) -> dict[str, Any]:
    """The model as plain Python data (for usage objects; rare path)."""
    if isinstance(model, dict):
        return model
    if not PYDANTIC_V1 and hasattr(model, "model_dump"):
        out: dict[str, Any] = model.model_dump()
        return out
    if hasattr(model, "dict"):
        out = model.dict()
        return out
    return dict(model.__dict__)
