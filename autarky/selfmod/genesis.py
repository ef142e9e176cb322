"""Agent genesis: a new evolvable agent made from a spec (`autarky agents create SPEC.toml`).

A spec names the agent, says what it is for, what it reads and writes, the metric it watches and the goal,
and points to labelled data (a CSV of `value,label`). An agent of a known kind is written offline from a
template (autarky/selfmod/genesis_templates.py), or by the LLM to the same interface; its tests come from
the template either way (they test the interface, not one implementation). The workflow
(workflows/agent_genesis.py) runs them in the sandbox, judges the agent on its decision data and registers
it only after a person approves.

Registered agents live in the knowledge base (activities/selfmod/genesis_store.py), which every host reads;
this module keeps the process's view of them (`registered`), filled by a loader the worker and the CLI
install, so `autarky.selfmod.agents.agent_spec` finds them like the declared ones. Pure: no I/O here.
"""

from __future__ import annotations

import logging
import re
import threading
import tomllib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from autarky.selfmod.types import AgentSpec

_log = logging.getLogger(__name__)
KINDS = ("threshold",)
GENERATED_PACKAGE = "autarky/selfmod/generated"
MAX_ROWS = 20_000  # the labelled data travels in the workflow's input and the registry's row
MIN_BLOCKS = 16  # the decision part needs 8 paired units for its bootstrap (workflows/self_modify.py)
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{2,47}$")
GENESIS_METRIC = "balanced accuracy of score > 0.5 against the labels (%)"
# Characters of a generated module the approval shows (workflows/agent_genesis.py): a longer one is refused,
# so a person never approves code past a cut they did not see.
SOURCE_SHOWN = 6000


class GenesisSpecError(ValueError):
    """A spec that cannot make an agent; the message names the field to fix."""


class GenesisSpec(BaseModel):
    """What a person asks for. The TOML keys are these fields' names."""

    name: str
    kind: Literal["threshold"] = "threshold"
    purpose: str = Field(min_length=10)
    description: str = ""
    metric_name: str = Field(min_length=1)  # the live metric the agent watches, e.g. "queue latency (ms)"
    inputs: str = "one value of the metric per step, in time order"
    outputs: str = "an anomaly score in [0, 1] per value; above 0.5 is an alert"
    # Which side of normal is an anomaly.
    alert_on: Literal["high", "low", "both"] = "both"
    goal: float = Field(80.0, gt=0, le=100)  # balanced accuracy (%) on the decision part
    data: str = Field(min_length=1)  # CSV with a header `value,label` (label 1 = anomalous, 0 = normal)
    blocks: int = Field(40, ge=MIN_BLOCKS, le=400)  # contiguous blocks the data is cut into
    generator: Literal["template", "llm"] = "template"
    files: list[str] = Field(default_factory=list)  # empty: its one module under GENERATED_PACKAGE

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                "must be 3–48 characters: lower-case letters, digits and '-', starting with a letter"
            )
        return value

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def source_path(self) -> str:
        return f"{GENERATED_PACKAGE}/{self.module}.py"

    @property
    def test_path(self) -> str:
        return f"tests/test_agent_{self.module}.py"


class LabelledSeries(BaseModel):
    values: list[float]
    labels: list[bool]


class GeneratedAgent(BaseModel):
    """A generated agent: its spec, shipped files (its source and its tests), defaults and data."""

    spec: AgentSpec
    kind: str
    origin: Literal["template", "llm"]
    files: dict[str, str]  # path → text: the source (as first shipped) and the test file
    defaults: dict[str, float]
    data: LabelledSeries
    blocks: int
    request: GenesisSpec
    figures: dict[str, float] = Field(default_factory=dict)  # part → figure when judged
    registered_by: str = ""
    registered_at: datetime | None = None
    genesis_run: str = ""  # the run that registered it ("<workflow id>@<run>"): its retries find it theirs


def _field_of(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


def parse_spec(text: str, source: str = "the spec", taken: Collection[str] = ()) -> GenesisSpec:
    """The spec in TOML text; GenesisSpecError naming the field that is wrong. `taken`: the names of
    the agents there are (a new one must not reuse one)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GenesisSpecError(f"{source} is not valid TOML: {e}") from e
    unknown = sorted(set(raw) - set(GenesisSpec.model_fields))
    if unknown:
        raise GenesisSpecError(
            f"{source}: unknown field {unknown[0]!r}; the fields are: {', '.join(GenesisSpec.model_fields)}"
        )
    try:
        spec = GenesisSpec.model_validate(raw)
    except ValidationError as e:
        raise GenesisSpecError(f"{source}: field {_field_of(e)}") from e
    if spec.name in taken:
        raise GenesisSpecError(f"{source}: field name: an agent {spec.name!r} exists already")
    for path in spec.files:
        if path != spec.source_path:
            raise GenesisSpecError(
                f"{source}: field files: a generated agent owns only its module {spec.source_path} "
                f"(got {path!r})"
            )
    return spec


def check_paths(spec: GenesisSpec, exists: Callable[[str], bool]) -> None:
    """GenesisSpecError unless the agent's files are new to the project tree (`exists`: whether a path is
    one of its files): the registry serves a generated agent's files before the project's own
    (activities/selfmod/shipped.py), so a spec named `store` would shadow tests/test_agent_store.py."""
    for path in (spec.source_path, spec.test_path):
        if exists(path):
            raise GenesisSpecError(
                f"field name: an agent {spec.name!r} would write {path}, a file the project has; "
                "choose another name"
            )


def parse_labelled_csv(text: str, source: str = "field data") -> LabelledSeries:
    """`value,label` rows (a header first); GenesisSpecError naming the line that is wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or [c.strip().lower() for c in lines[0].split(",")][:2] != ["value", "label"]:
        raise GenesisSpecError(f"{source}: the CSV must start with the header `value,label`")
    rows = lines[1:]
    if len(rows) > MAX_ROWS:
        raise GenesisSpecError(f"{source}: {len(rows)} rows; at most {MAX_ROWS}")
    values, labels = [], []
    for number, line in enumerate(rows, start=2):
        cells = [c.strip() for c in line.split(",")]
        try:
            value = float(cells[0])
            label = {"1": True, "0": False, "true": True, "false": False}[cells[1].lower()]
        except (ValueError, KeyError, IndexError):
            raise GenesisSpecError(f"{source}: line {number} ({line[:60]!r}) is not `number,0|1`") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise GenesisSpecError(f"{source}: line {number}: the value is not finite")
        values.append(value)
        labels.append(label)
    return LabelledSeries(values=values, labels=labels)


# ---------------------------------------------------------------------- the split and the judge


def split_blocks(series: LabelledSeries, blocks: int) -> dict[str, dict[str, tuple[list[float], list[bool]]]]:
    """The rows in time order cut into `blocks` contiguous blocks, which alternate search, decision, …:
    part → block key → (values, labels). Keys sort in time order ("b0000", "b0001", …)."""
    n = len(series.values)
    parts: dict[str, dict[str, tuple[list[float], list[bool]]]] = {"search": {}, "decision": {}}
    for b in range(blocks):
        start, end = b * n // blocks, (b + 1) * n // blocks
        part = "search" if b % 2 == 0 else "decision"
        parts[part][f"b{b:04d}"] = (series.values[start:end], series.labels[start:end])
    return parts


def check_split(series: LabelledSeries, blocks: int) -> None:
    """GenesisSpecError unless each part has anomalous and normal rows (its metric needs both)."""
    if len(series.values) < 2 * blocks:
        raise GenesisSpecError(
            f"field data: {len(series.values)} rows for {blocks} blocks; give 2 rows a block"
        )
    for part, chunks in split_blocks(series, blocks).items():
        labels = [label for _, ls in chunks.values() for label in ls]
        if all(labels) or not any(labels):
            raise GenesisSpecError(
                f"field data: the {part} part (every other of {blocks} blocks) has only "
                f"{'anomalous' if all(labels) else 'normal'} rows; label more data or change field blocks"
            )


def balanced_accuracy_units(
    labels: dict[str, list[bool]], scores: dict[str, list[float]]
) -> dict[str, float]:
    """Per block, its share of the part's balanced accuracy (%) of `score > 0.5`: a caught anomaly is worth
    50/P, a quiet normal value 50/N. The units sum to the metric, for the paired bootstrap."""
    positives = sum(sum(ls) for ls in labels.values())
    negatives = sum(len(ls) - sum(ls) for ls in labels.values())
    units = {}
    for key, ls in labels.items():
        total = 0.0
        for label, score in zip(ls, scores[key], strict=True):
            if label and score > 0.5:
                total += 50.0 / positives
            elif not label and score <= 0.5:
                total += 50.0 / negatives
        units[key] = total
    return units


# ---------------------------------------------------------------------- the process's registry


class _Registry:
    """Registered agents as this process knows them, refreshed from the knowledge base on a miss, and the
    agents a genesis run is testing now (staged: known to this process only, while it tests them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, GeneratedAgent] = {}
        self._staged: dict[str, GeneratedAgent] = {}
        self._loader: Callable[[], list[GeneratedAgent]] | None = None

    def install_loader(self, loader: Callable[[], list[GeneratedAgent]] | None) -> None:
        with self._lock:
            self._loader = loader

    def refresh(self) -> None:
        loader = self._loader
        if loader is None:
            return
        try:
            found = {a.spec.name: a for a in _outside_the_sandbox(loader)}
        except Exception as e:  # an unreadable registry: the declared agents still work, said once here
            _log.warning("the registry of generated agents cannot be read: %s", e)
            return
        with self._lock:
            self._known = found

    def get(self, name: str, load: bool = True) -> GeneratedAgent | None:
        with self._lock:
            hit = self._staged.get(name) or self._known.get(name)
        if hit is None and load and self._loader is not None:
            self.refresh()
            with self._lock:
                hit = self._known.get(name)
        return hit

    def all(self) -> list[GeneratedAgent]:
        self.refresh()
        with self._lock:
            return sorted(self._known.values(), key=lambda a: a.spec.name)

    def file_text(self, path: str) -> str | None:
        """The shipped text of a generated agent's file (its source or tests), None for other paths."""
        if not path.startswith((GENERATED_PACKAGE + "/", "tests/test_agent_")):
            return None
        with self._lock:
            for agent in (*self._staged.values(), *self._known.values()):
                if path in agent.files:
                    return agent.files[path]
        return None

    @contextmanager
    def staged(self, agent: GeneratedAgent) -> Iterator[None]:
        with self._lock:
            self._staged[agent.spec.name] = agent
        try:
            yield
        finally:
            with self._lock:
                self._staged.pop(agent.spec.name, None)


def _outside_the_sandbox(loader: Callable[[], list[GeneratedAgent]]) -> list[GeneratedAgent]:
    """The loader's answer; in a workflow (self_modify's `default_parameters` on a process that has not
    met the agent yet) with the sandbox's restrictions lifted for it, as for an import passed through:
    a registration never changes once made, so every replay reads the same."""
    from temporalio import workflow

    if not workflow.in_workflow():
        return loader()
    with workflow.unsafe.sandbox_unrestricted(), workflow.unsafe.imports_passed_through():
        return loader()


registry = _Registry()


def generated_spec(name: str) -> AgentSpec | None:
    agent = registry.get(name)
    return None if agent is None else agent.spec


def generated_defaults(name: str) -> dict[str, float] | None:
    """A generated agent's shipped parameters; None for any other name (no loading: a declared agent's
    name is never looked up in the knowledge base)."""
    agent = registry.get(name)
    return None if agent is None else dict(agent.defaults)
