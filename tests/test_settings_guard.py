"""Every model the settings reach refuses unknown keys while they load (a structural check of the
settings' guard, autarky/core/settings_section.py)."""

from __future__ import annotations

import types
from typing import Annotated, Any, ForwardRef, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

from autarky.core.settings import AutarkySettings
from autarky.core.settings_section import Section, SettingsSection

SECTION_MARKER = type(get_args(Section[BaseModel])[1])


def unguarded_models(root: type[BaseModel]) -> tuple[list[str], set[type[BaseModel]]]:
    """The models reachable from `root`'s fields (through lists, dicts, unions, `Annotated`) that would
    ignore an unknown key while the settings load, as `dotted.path (Model)` (`[]`: a list item or a dict
    value); and every model reached, so that a walk that stops early shows."""
    found: list[str] = []
    reached: set[type[BaseModel]] = set()

    def model(cls: type[BaseModel], path: str, marked: bool) -> None:
        # Strict because it checks its keys itself, `Section[...]` checks them, or pydantic decides.
        strict = (
            marked or issubclass(cls, SettingsSection) or cls.model_config.get("extra") in {"forbid", "allow"}
        )
        if not strict:
            found.append(f"{path or '<root>'} ({cls.__name__})")
        if cls in reached:
            return
        reached.add(cls)
        for name, info in cls.model_fields.items():
            # `Section[M]` as a field's whole type: pydantic keeps M as the annotation, the marker apart.
            kind(info.annotation, f"{path}.{name}".lstrip("."), marked=_marked(info.metadata))

    def kind(hint: Any, path: str, marked: bool = False) -> None:
        assert not isinstance(hint, str | ForwardRef), f"{path}: unresolved annotation {hint!r}"
        origin = get_origin(hint)
        if origin is Annotated:  # the marker guards the model it is put on, not what that model holds
            inner, *metadata = get_args(hint)
            kind(inner, path, marked or _marked(metadata))
        elif isinstance(hint, type) and issubclass(hint, BaseModel):
            model(hint, path, marked)
        elif origin in (Union, types.UnionType):
            for arg in get_args(hint):
                kind(arg, path)
        elif origin is not None and origin is not Literal:  # list, dict, tuple, ...: their items
            for arg in get_args(hint):
                kind(arg, f"{path}[]")

    model(root, "", marked=False)
    return found, reached


def _marked(metadata: list[Any]) -> bool:
    return any(isinstance(m, SECTION_MARKER) for m in metadata)


def test_every_model_the_settings_reach_refuses_unknown_keys() -> None:
    """A field typed with a model from outside the settings modules must say `Section[Model]`: otherwise a
    typo in its keys is ignored while loading, and the setting silently keeps its default."""
    from autarky.autopilot.detectors.anomaly import AnomalyConfig
    from autarky.llm.types import ModelPrice
    from autarky.scaling.policy_types import ScalingPolicy
    from autarky.scaling.settings import ScalableResource
    from autarky.selfmod.types import SandboxLimits

    found, reached = unguarded_models(AutarkySettings)
    assert not found, f"models that ignore unknown keys while loading (use Section[...]): {found}"
    # The walk sees into lists, dicts and `Section[...]`: the payload models reused by sections included.
    assert {ScalableResource, ScalingPolicy, ModelPrice, SandboxLimits, AnomalyConfig} <= reached


def test_the_walk_names_each_unguarded_model_by_its_path() -> None:
    class Payload(BaseModel):  # a payload type from outside the settings modules
        size: int = 1

    class Holder(BaseModel):
        inner: Payload = Payload()

    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")

    class Fake(SettingsSection):
        plain: Payload = Payload()
        maybe: Payload | None = None
        items: list[Payload] = []
        by_name: dict[str, Annotated[Payload, Field(description="not a Section marker")]] = {}
        guarded: Section[Payload] = Payload()
        guarded_items: dict[str, Section[Payload]] = {}
        guarded_or_none: Section[Payload] | None = None
        holder: Section[Holder] = Holder()  # guards Holder's keys, not those of the models in it
        open: Open = Open()
        kind: Literal["a", "b"] = "a"

    found, reached = unguarded_models(Fake)
    assert found == [
        "plain (Payload)",
        "maybe (Payload)",
        "items[] (Payload)",
        "by_name[] (Payload)",
        "holder.inner (Payload)",
    ]
    assert reached == {Fake, Payload, Holder, Open}
    assert unguarded_models(Payload)[0] == ["<root> (Payload)"]


# --- secrets never appear in the message -----------------------------------------------------------
