"""The self-modification settings section (`[evolution]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from autarky.core.settings_section import Section, SettingsSection
from autarky.selfmod.types import SandboxLimits


class EvolutionSettings(SettingsSection):
    """Self-modification settings (AUTARKY_EVOLUTION__…)."""

    # NAB-format data the anomaly detector is evolved on; None: the development set beside the project
    # (../shared/data/nab), when there is one.
    nab_data_dir: Path | None = None
    nab_windows_file: Path | None = None
    # Where candidates' work directories are made; None: the system's temporary directory.
    workdir_parent: Path | None = None
    limits: Section[SandboxLimits] = Field(default_factory=SandboxLimits)
    # Candidates checked (static + sandbox tests) at the same time.
    parallel_checks: int = Field(2, ge=1, le=16)
    # Where this machine cannot bound a sandbox run's totals (memory, processes, CPU: no usable cgroup),
    # which versions may still run: "never" none, "parameters" those whose sources are the shipped ones
    # (not code an LLM wrote), "always" all of them.
    allow_unbounded_totals: Literal["never", "parameters", "always"] = "parameters"
