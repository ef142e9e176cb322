"""Settings sections: strict about their keys when loaded as settings, lenient as workflow payloads.

The section models (AutopilotSettings, ScalingSettings, …) also travel inside workflow inputs, where an
older worker must accept the fields a newer client adds: there they ignore unknown keys, as pydantic does
by default. While the settings load (`loading_settings`, entered by `AutarkySettings` itself, whose
`__init__` takes no validation context) every section refuses them instead, at any depth, in lists and
dicts too, each error carrying the nearest valid key (``ctx["nearest"]``).

- a model defined in a settings module derives from `SettingsSection`;
- a model defined elsewhere (a payload type reused by a section, e.g. ScalingPolicy) is declared
  `Section[Model]` where the section uses it;
- a secret setting is a `SecretSetting`: its value is noted for redaction while loading, and its bad
  value never appears in a validation error.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError, core_schema

from autarky.core.redaction import REDACTED


@dataclass
class Loading:
    """What one validation of the settings noted: the values of the secret settings."""

    secrets: set[str] = field(default_factory=set)


_loading: ContextVar[Loading | None] = ContextVar("autarky_settings_loading", default=None)


@contextmanager
def loading_settings() -> Iterator[Loading]:
    """Sections validated inside refuse unknown keys; a nested call shares the outer call's record."""
    current = _loading.get()
    if current is not None:
        yield current
        return
    record = Loading()
    token = _loading.set(record)
    try:
        yield record
    finally:
        _loading.reset(token)


def nearest_key(key: Any, model: type[BaseModel]) -> str | None:
    """The field of `model` whose name is closest to a misspelt `key`, if any is close."""
    near = difflib.get_close_matches(str(key).lower(), list(model.model_fields), n=1, cutoff=0.6)
    return near[0] if near else None


def refuse_unknown_keys(model: type[BaseModel], data: Any, handler: Callable[[Any], Any]) -> Any:
    """Validate `data` as `model`; while loading, also refuse the keys it has no field for.

    The unknown keys are reported beside the section's other errors, so that one message lists them all.
    """
    if (
        _loading.get() is None
        or not isinstance(data, dict)
        or model.model_config.get("extra")
        in {
            "allow",
            "forbid",  # pydantic refuses them itself
        }
    ):
        return handler(data)
    keys = _keys(model)
    unknown = [_unknown(model, key, value) for key, value in data.items() if key not in keys]
    try:
        value = handler(data)
    except ValidationError as error:
        if not unknown:
            raise
        raise ValidationError.from_exception_data(
            error.title, [*(_again(item) for item in error.errors()), *unknown]
        ) from None
    if unknown:
        raise ValidationError.from_exception_data(model.__name__, unknown)
    return value


class SettingsSection(BaseModel):
    """A settings section: ignores unknown keys as a payload, refuses them while the settings load."""

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys_only(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return refuse_unknown_keys(cls, data, handler)


class _KnownKeys:
    """`Section[Model]`'s marker: `refuse_unknown_keys` around a model that is no `SettingsSection`."""

    def __get_pydantic_core_schema__(
        self, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(
            lambda data, inner: refuse_unknown_keys(source, data, inner), handler(source)
        )


M = TypeVar("M", bound=BaseModel)
Section = Annotated[M, _KnownKeys()]


def _secret(value: Any, handler: ValidatorFunctionWrapHandler) -> SecretStr:
    try:
        secret: SecretStr = handler(value)
    except ValidationError as error:
        # The error keeps the place and the reason but not the value, whatever the value's type.
        raise ValidationError.from_exception_data(
            error.title, [{**_again(item), "input": REDACTED} for item in error.errors()]
        ) from None
    loading = _loading.get()
    if loading is not None and secret.get_secret_value():
        loading.secrets.add(secret.get_secret_value())
    return secret


SecretSetting = Annotated[SecretStr, WrapValidator(_secret)]


def _keys(model: type[BaseModel]) -> set[str]:
    """Every key that may name a field of `model`: its name and its string aliases."""
    keys = set(model.model_fields)
    for info in model.model_fields.values():
        for alias in (info.alias, info.validation_alias):
            choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
            keys.update(choice for choice in choices if isinstance(choice, str))
    return keys


def _unknown(model: type[BaseModel], key: Any, value: Any) -> InitErrorDetails:
    near = nearest_key(key, model)
    return {
        "type": PydanticCustomError(
            "extra_forbidden", "Extra inputs are not permitted", {"nearest": near} if near else None
        ),
        "loc": (key,),
        "input": value,
    }


def _again(item: ErrorDetails) -> InitErrorDetails:
    """An error pydantic reported, to raise again with others: its type, message, context and place."""
    ctx = item.get("ctx")
    return {
        "type": PydanticCustomError(item["type"], item["msg"], dict(ctx) if ctx else None),
        "loc": item["loc"],
        "input": item["input"],
    }
