"""The long-lived objects one studio process shares between all browser sessions.

Built once at start-up and handed to the tabs; nothing here lives in `gr.State` (models stay
in the engine's ModelManager, rows in the database). Creating it recovers from a previous run:
jobs left running are marked failed with a reason, queued jobs stay queued for the runner.

The catalogs of what this machine holds live in the engine (`engine.core.catalog` for adapters
and tag encoders, `engine.reward.catalog` for reward models); their names are re-exported here
for the tabs that import them from this module.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine.core.catalog import (AdapterCatalog, AdapterEntry, TagEncoderEntry, find_tag_encoders, inspect_tag_encoder,
                                 tag_encoder_roots, tag_encoders_for)
from engine.core.pks import Taxonomy, load_taxonomy
from engine.core.presets import PresetLibrary, builtin_presets_dir
from engine.core.registry import REGISTRY, ModelSpec, resolve_model
from engine.core.settings import Settings
from engine.reward.catalog import RewardEntry, RewardModelCache, find_reward_models
from engine.studio import Studio

from engine.access import AccessPolicy, Viewer

from .identity import Identity, require_creator
from .jobs import JobRunner, on_zero_gpu

if TYPE_CHECKING:
    from engine.rating.service import RatingService
    from engine.reward.history import HistoryScorer
    from engine.reward.model import RewardModel
    from engine.storage.repository.reward import RewardScoreRecord

__all__ = ["DEFAULT_DOWNLOAD_MODEL", "AdapterCatalog", "AdapterEntry", "RewardEntry", "StudioServices", "shown_folder",
           "TagEncoderEntry", "find_reward_models", "find_tag_encoders", "inspect_tag_encoder", "tag_encoder_roots",
           "tag_encoders_for"]

log = logging.getLogger(__name__)

DEFAULT_DOWNLOAD_MODEL = "wan2.1-t2v-1.3b"


@dataclass
class StudioServices:
    settings: Settings
    studio: Studio
    taxonomy: Taxonomy
    presets: PresetLibrary
    runner: JobRunner
    recovered: int = 0  # jobs marked failed at start-up because a previous run stopped mid-way
    availability: dict[str, bool] = field(default_factory=dict)  # registry id -> weights on this machine
    identity: Identity = field(default_factory=Identity)  # how users sign in (app/services/identity.py)
    _adapter_catalog: AdapterCatalog | None = field(default=None, repr=False)
    _rating: "RatingService | None" = field(default=None, repr=False)
    _reward_cache: RewardModelCache = field(init=False, repr=False)  # keeps Best of N's model loaded
    _libraries: dict[str, PresetLibrary] = field(default_factory=dict, repr=False)  # per owner (owned studio)
    _libraries_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._reward_cache = RewardModelCache(self.settings.reward_dir)

    def presets_for(self, viewer: Viewer) -> PresetLibrary:
        """The presets a viewer lists and changes: the studio's own folder in a shared studio and for
        admins; in an owned studio a folder of each user's own (`presets/users/<digest>`)."""
        if self.access.sees_all(viewer):
            return self.presets
        key = hashlib.sha256(viewer.owner.encode("utf-8")).hexdigest()[:20]
        with self._libraries_lock:
            library = self._libraries.get(key)
            if library is None:
                library = PresetLibrary(builtin_presets_dir(), self.settings.presets_dir / "users" / key,
                                        self.taxonomy)
                self._libraries[key] = library
            return library

    def page_presets(self) -> PresetLibrary:
        """What a page shows before it knows who is looking: in an owned studio the built-ins only
        (each visitor's own presets arrive with the page's load event)."""
        if self.access.scope == "shared":
            return self.presets
        return PresetLibrary(builtin_presets_dir(), self.settings.presets_dir / "users" / "-", self.taxonomy)

    def library_for(self, request: Any) -> PresetLibrary:
        """The presets of the person behind a Gradio request; raters are refused (PermissionDenied)."""
        return self.presets_for(require_creator(self, request))

    @property
    def access(self) -> AccessPolicy:
        """Who sees and manages which entries, and the per-user limits (engine/access.py)."""
        return self.runner.access

    @property
    def adapter_catalog(self) -> AdapterCatalog:
        """Built on first use: nothing is scanned (and torch is not imported) while the page is built."""
        if self._adapter_catalog is None:
            self._adapter_catalog = AdapterCatalog(self.settings, self.studio.history)
        return self._adapter_catalog

    @property
    def rating(self) -> "RatingService":
        """Animator rating over the studio's database and media folder, made on first use."""
        if self._rating is None:
            from engine.rating.service import RatingService
            from engine.rating.settings_file import load_rating_config  # `engine rating config set`

            self._rating = RatingService(self.studio.db, self.settings.media_dir,
                                         load_rating_config(self.settings.data_dir),
                                         priority_of=self._uncertainty_priority)
        return self._rating

    def _uncertainty_priority(self, model_key: str) -> Callable[[Any], float]:
        """Rating asks the reward model's least certain pairs first: scores stored under `model_key`."""
        from engine.reward.queue import uncertainty_priority
        from engine.storage.repository import RewardRepository

        return uncertainty_priority(RewardRepository(self.studio.db), model_key)

    @classmethod
    def create(cls, settings: Settings, *, start_worker: bool | None = None, orphan_grace_s: float = 20.0,
               access: AccessPolicy | None = None, identity: Identity | None = None,
               executes: bool = True) -> "StudioServices":
        """`start_worker` defaults to True except on ZeroGPU, where a thread outside a request gets
        no GPU (queued jobs then stay queued, shown, and can be removed)."""
        studio = Studio(settings)
        # Only jobs whose worker is gone; with separate workers (`executes=False`) they requeue those.
        recovered = studio.recover_interrupted() if executes else 0
        if recovered:
            log.warning("%d job(s) were cut off by the last shutdown and are marked failed", recovered)
        taxonomy = load_taxonomy()
        presets = PresetLibrary(builtin_presets_dir(), settings.presets_dir, taxonomy)
        runner = JobRunner(studio, orphan_grace_s=orphan_grace_s, access=access, executes=executes)
        services = cls(settings, studio, taxonomy, presets, runner, recovered, identity=identity or Identity())
        services.refresh_availability()
        if start_worker is None:
            start_worker = executes and not on_zero_gpu()
        if start_worker:
            runner.start(resume=True)
        return services

    def refresh_availability(self) -> dict[str, bool]:
        from engine.core.loading import is_available_locally

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

    # -- reward models (Best of N) ------------------------------------------------------------------
    @property
    def reward_dir(self) -> Path:
        return self.settings.reward_dir

    def reward_models(self) -> tuple[RewardEntry, ...]:
        """The reward checkpoints in `reward_dir`, newest first (re-read on every call: no torch)."""
        return find_reward_models(self.reward_dir)

    def load_reward_model(self, name: str) -> "RewardModel":
        """The checkpoint `name` (a folder listed by `reward_models`), loaded on the studio's device.

        The last one loaded stays in memory until its files change. Call it under the GPU lock:
        loading puts weights on the GPU. InvalidRequest when `name` is not a listed checkpoint.
        """
        return self._reward_cache.load(name, self.settings.device)

    def reward_scorer(self, name: str) -> "HistoryScorer":
        """A `HistoryScorer` over the studio's history with the checkpoint `name` (loaded through
        `load_reward_model`, so: call it under the GPU lock)."""
        from engine.reward.history import HistoryScorer

        return HistoryScorer(self.studio.db, self.settings.media_dir, self.load_reward_model(name))

    def stored_reward_scores(self, generation_id: int) -> "list[RewardScoreRecord]":
        """Every reward model's stored score of one history entry, newest first (no model is run)."""
        from engine.storage.repository.reward import RewardRepository

        return RewardRepository(self.studio.db).for_generation(generation_id)

    def close(self) -> None:
        self.runner.stop()
        self.studio.close()


def shown_folder(services: "StudioServices", folder: Path) -> str:
    """A folder of the studio as a page may show it: the absolute path in a private studio (it is
    the owner's machine), "data folder/…" in a hosted one, where a visitor has no business
    learning the server's layout."""
    if services.access.scope != "owned":
        return str(folder)
    try:
        inside = Path(folder).resolve().relative_to(services.settings.data_dir.resolve())
    except (OSError, RuntimeError, ValueError):
        return f"the studio's {Path(folder).name} folder"
    return "data folder/" + inside.as_posix() if inside.parts else "data folder"
