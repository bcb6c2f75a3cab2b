"""The long-lived objects one studio process shares between all browser sessions.

Built once at start-up and handed to the tabs; nothing here lives in `gr.State` (models stay
in the engine's ModelManager, rows in the database). Creating it recovers from a previous run:
jobs left running are marked failed with a reason, queued jobs stay queued for the runner.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from engine.pks import Taxonomy, load_taxonomy
from engine.presets import BUILTIN_PRESETS_DIR, PresetLibrary
from engine.registry import REGISTRY, ModelSpec, resolve_model
from engine.settings import Settings
from engine.studio import Studio

from .jobs import JobRunner, on_zero_gpu

log = logging.getLogger(__name__)

DEFAULT_DOWNLOAD_MODEL = "wan2.1-t2v-1.3b"


def builtin_presets_folder() -> Path:
    """The engine names this `builtin_presets_dir()` in newer versions; fall back to the constant."""
    from engine import presets

    finder = getattr(presets, "builtin_presets_dir", None)
    return Path(finder()) if callable(finder) else BUILTIN_PRESETS_DIR


@dataclass
class StudioServices:
    settings: Settings
    studio: Studio
    taxonomy: Taxonomy
    presets: PresetLibrary
    runner: JobRunner
    recovered: int = 0  # jobs marked failed at start-up because a previous run stopped mid-way
    availability: dict[str, bool] = field(default_factory=dict)  # registry id -> weights on this machine

    @classmethod
    def create(cls, settings: Settings, *, start_worker: bool | None = None,
               orphan_grace_s: float = 20.0) -> "StudioServices":
        """`start_worker` defaults to True except on ZeroGPU, where a thread outside a request gets
        no GPU (queued jobs then stay queued, shown, and can be removed)."""
        studio = Studio(settings)
        recovered = studio.history.recover_interrupted()
        if recovered:
            log.warning("%d job(s) were cut off by the last shutdown and are marked failed", recovered)
        taxonomy = load_taxonomy()
        presets = PresetLibrary(builtin_presets_folder(), settings.presets_dir, taxonomy)
        runner = JobRunner(studio, orphan_grace_s=orphan_grace_s)
        services = cls(settings, studio, taxonomy, presets, runner, recovered)
        services.refresh_availability()
        if start_worker is None:
            start_worker = not on_zero_gpu()
        if start_worker:
            runner.start(resume=True)
        return services

    def refresh_availability(self) -> dict[str, bool]:
        from engine.loading import is_available_locally

        self.availability = {mid: is_available_locally(spec, self.settings) for mid, spec in REGISTRY.items()}
        return self.availability

    @property
    def default_model(self) -> str:
        return self.settings.default_model

    def default_spec(self) -> ModelSpec | None:
        try:
            return resolve_model(self.settings.default_model)
        except Exception:  # noqa: BLE001 - a bad default is reported by the banner, not at import
            return None

    def default_weights_missing(self) -> bool:
        spec = self.default_spec()
        if spec is None or spec.is_preview:
            return False
        if spec.id in self.availability:
            return not self.availability[spec.id]
        return spec.local_path is not None and not spec.local_path.is_dir()

    def close(self) -> None:
        self.runner.stop()
        self.studio.close()
