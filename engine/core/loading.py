"""Finding weights and keeping loaded pipelines.

Every model, the built-in preview included, goes through `ModelManager.load`: locate the folder
(hub cache, download, local path, or the preview written on first use), then diffusers'
`from_pretrained` with the memory plan's quantization, then offload placement. One pipeline is
kept at a time: a consumer GPU rarely holds two video models.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineError, InvalidRequest, ModelUnavailable
from .memory import MemoryPlan, load_time_quantization, place, quantize_components
from .preview import ensure_preview_model
from .quantization import CACHEABLE_MODES, library_of
from .registry import ModelSpec, resolve_model
from .settings import Settings


log = logging.getLogger(__name__)
_QUIET_LOGGERS = ("torch.utils._pytree", "torchao", "torchao.kernel.intmm", "diffusers", "transformers")


def quiet_libraries() -> None:
    """Silence import-time chatter and per-component load bars of the ML libraries.

    Users see the studio's own progress instead; the hub's download bars stay on, since a
    first download can take many minutes.
    """
    import logging

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    plan: MemoryPlan
    pipe: Any
    load_seconds: float
    folder: Path | None = None  # where its files are (keys the prompt cache)
    has_text_encoder: bool = True  # False: loaded for prompts already encoded (engine/core/prompt_cache.py)


def download_hint(spec: ModelSpec) -> str:
    if spec.builtin == "mini":  # made here, never downloaded
        from .mini_model import REBUILD

        return f"Its weights are trained on this machine by `{REBUILD}`; the built-in `preview` model works offline."
    return (
        f"On a machine with network run `python -m engine download {spec.id}` (or `hf download {spec.repo}`), "
        "or pass a local diffusers folder with --model PATH; the built-in `preview` model works offline."
    )


def locate_weights(spec: ModelSpec, settings: Settings, *, allow_download: bool = True) -> Path:
    """The local folder holding the model's diffusers files, downloading it if allowed and online."""
    if spec.is_preview:
        return ensure_preview_model(settings.models_dir)
    if spec.builtin == "mini":
        from .mini_model import ensure_mini_model

        return ensure_mini_model(settings.models_dir)
    if spec.local_path is not None:
        return spec.local_path
    from huggingface_hub import snapshot_download

    offline = settings.offline or not allow_download
    try:
        # snapshot_download shows a progress bar per file while downloading.
        return Path(snapshot_download(spec.repo, local_files_only=offline, cache_dir=settings.hf_cache_dir))
    except Exception as exc:  # hub errors come as OSError/ValueError/HTTP subclasses; all mean "not here"
        why = "offline and not in the local cache" if offline else f"download failed: {type(exc).__name__}: {exc}"
        raise ModelUnavailable(spec.id, spec.repo, f"{why.rstrip('.')}. {download_hint(spec)}",
                               reason="not on this machine, and it is offline" if offline
                               else f"not on this machine, and the download failed ({type(exc).__name__})") from None


def weights_size(folder: Path) -> int:
    """Bytes of weight files in a diffusers folder: the basis of the automatic offload choice."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt"))


def transformer_config(spec: ModelSpec, settings: Settings) -> dict[str, Any] | None:
    """The model's transformer/config.json when its files are on this machine (None otherwise)."""
    import json

    if spec.builtin is not None:
        folder: Path | None = settings.models_dir / spec.builtin  # not built here: prepare must stay fast
    else:
        try:
            folder = locate_weights(spec, settings, allow_download=False)
        except ModelUnavailable:
            folder = None
    path = folder / "transformer" / "config.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_available_locally(spec: ModelSpec, settings: Settings) -> bool:
    try:
        if spec.builtin == "mini":
            from .mini_model import shipped

            return shipped()
        locate_weights(spec, settings, allow_download=False) if not spec.is_preview else None
        return True
    except ModelUnavailable:
        return False


def builtin_default(settings: Settings) -> str | None:
    """`mini` when a studio started without a chosen default model should use it: its weights ship
    and the registry default cannot make a clip here in reasonable time (no GPU), or at all (its
    weights are missing and the studio is offline). None: keep the configured default."""
    from .memory import resolve_device
    from .mini_model import shipped
    from .registry import MINI_ID

    if not shipped():
        return None

    try:
        spec = resolve_model(settings.default_model)
    except InvalidRequest:
        return MINI_ID
    if spec.id == MINI_ID or spec.is_preview:
        return None
    if settings.offline and not is_available_locally(spec, settings):
        return MINI_ID
    try:
        return MINI_ID if resolve_device(settings.device) == "cpu" else None
    except InvalidRequest:
        return None


def check_weights_present(spec: ModelSpec, settings: Settings) -> None:
    """Raise InvalidRequest("model") unless the weights are on this machine; never asks the hub."""
    if not is_available_locally(spec, settings):
        raise InvalidRequest("model", f"the weights of {spec.id} are not on this server, and this hosted studio "
                                      "never downloads weights for a visitor's request; an admin can run "
                                      f"`python -m engine download {spec.id}` (or start a private studio with "
                                      "--allow-downloads)")


class ModelManager:
    """Loads pipelines on demand and frees them when asked ("free memory")."""

    def __init__(self, settings: Settings) -> None:
        # quiet_libraries imports diffusers (seconds): done on the first load, not here, so a
        # studio that has not generated yet starts fast.
        self._quieted = False
        self._settings = settings
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None

    def holds(self, spec: ModelSpec, plan: MemoryPlan, *, text_encoder: bool = True) -> bool:
        """Whether `load` would return the pipeline already in memory (nothing read from disk)."""
        cur = self._current
        return (cur is not None and cur.spec.id == spec.id and cur.plan == plan
                and (cur.has_text_encoder or not text_encoder))

    def load(self, spec: ModelSpec, plan: MemoryPlan, *, text_encoder: bool = True) -> LoadedModel:
        """The pipeline for `spec` placed as `plan` says. `text_encoder=False` (every prompt of the job
        is in the prompt cache) leaves the text encoder, the largest part of a Wan model, unread; a
        later job that needs it loads the pipeline again, with it."""
        with self._lock:
            if self.holds(spec, plan, text_encoder=text_encoder) and self._current is not None:
                return self._current
            self._release()
            if not self._quieted:
                quiet_libraries()
                self._quieted = True
            folder = locate_weights(spec, self._settings)
            started = time.perf_counter()
            skip = () if text_encoder else ("text_encoder",)
            cached = self._from_cache(spec, folder, plan, skip)
            pipe = self._from_pretrained(spec, folder, plan, cached, skip)
            # A transformer file keeps its own weights: the mode quantizes the text encoder only.
            own = ("transformer",) if plan.transformer_file is not None else ()
            fresh = quantize_components(pipe, plan, (*cached, *own))
            self._write_cache(spec, folder, plan, pipe, fresh, tuple(cached))
            place(pipe, plan)
            pipe.set_progress_bar_config(disable=True)
            self._current = LoadedModel(spec, plan, pipe, time.perf_counter() - started, folder,
                                        has_text_encoder=getattr(pipe, "text_encoder", None) is not None)
            return self._current

    def _from_cache(self, spec: ModelSpec, folder: Path, plan: MemoryPlan,
                    skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Components the quantized cache holds for this model and mode (engine/core/quantized_cache.py)."""
        from . import quantized_cache as qc

        if plan.quantization not in CACHEABLE_MODES:
            return {}
        library = library_of(plan.quantization)
        if plan.transformer_file is not None:  # the file is the transformer; only the text encoder is cached
            skip = (*skip, "transformer")
        import torch

        out: dict[str, Any] = {}
        root = qc.cache_root(self._settings.models_dir, spec.id, plan.quantization)
        for name in qc.COMPONENTS:
            if not (folder / name).is_dir() or name in skip:
                continue
            entry = root / name
            if not entry.exists():
                continue
            if not qc.is_valid(entry, qc.source_key(folder, name, plan.quantization, plan.dtype_name)):
                log.warning("the quantized cache %s is stale or damaged; it will be rebuilt", entry)
                continue
            dtype, family_class = getattr(torch, plan.dtype_name), spec.family.transformer_class
            try:
                if library == "torchao":
                    out[name] = qc.load_torchao(entry, name, family_class, dtype)
                elif library == "layerwise":
                    out[name] = qc.load_layerwise(entry, folder, name, family_class, dtype)
                else:
                    out[name] = qc.load(entry, folder, name, family_class, dtype)
            except (EngineError, OSError, RuntimeError, ValueError, KeyError) as exc:
                log.warning("the quantized cache %s could not be used (%s); it will be rebuilt", entry, exc)
        return out

    def _write_cache(self, spec: ModelSpec, folder: Path, plan: MemoryPlan, pipe: Any,
                     components: tuple[str, ...], cached: tuple[str, ...] = ()) -> None:
        """After a first load in a quantizing mode: keep the quantized components for the next loads.
        `components` are those quantized after loading; torchao quantized every component it loaded."""
        from . import quantized_cache as qc

        if plan.quantization not in CACHEABLE_MODES:
            return
        library = library_of(plan.quantization)
        torchao = library == "torchao"
        if torchao:
            components = tuple(n for n in qc.COMPONENTS if n not in cached and getattr(pipe, n, None) is not None)
        if plan.transformer_file is not None:  # never store the file's transformer as the folder's
            components = tuple(n for n in components if n != "transformer")
        root = qc.cache_root(self._settings.models_dir, spec.id, plan.quantization)
        for name in components:
            if (folder / name).is_dir():
                try:
                    key = qc.source_key(folder, name, plan.quantization, plan.dtype_name)
                    if torchao:
                        qc.write_torchao(root / name, getattr(pipe, name), key)
                    else:
                        qc.write(root / name, getattr(pipe, name), key, kind=library)
                except OSError as exc:  # a full or read-only disk costs the next load time, not this one
                    log.warning("could not write the quantized cache %s: %s", root / name, exc)

    def _from_pretrained(self, spec: ModelSpec, folder: Path, plan: MemoryPlan,
                         cached: dict[str, Any] | None = None, skip: tuple[str, ...] = ()) -> Any:
        import torch
        import diffusers
        from diffusers import DiffusionPipeline

        kwargs: dict[str, Any] = {"dtype": getattr(torch, plan.dtype_name)}
        quant = load_time_quantization(plan)
        if quant is not None:
            kwargs["quantization_config"] = quant
        for name in (*(cached or {}), *skip):
            kwargs[name] = None  # from the quantized cache, or not needed: the folder's weights are never read
        single = None
        if plan.transformer_file is not None:
            from .single_file import load_transformer_file

            single = load_transformer_file(Path(plan.transformer_file), spec.family, folder, plan.dtype_name)
            # The folder's transformer is never read. Registered after loading: a component passed to
            # from_pretrained would be cast to `dtype`, which dequantizes GGUF weights.
            kwargs["transformer"] = None
        try:
            # The family's own pipeline class: DiffusionPipeline.from_pretrained reads the optional-component
            # list of the base class, so a `transformer=None` given to it would still load the folder's one.
            pipeline_class = getattr(diffusers, spec.family.pipeline_class, DiffusionPipeline)
            pipe = pipeline_class.from_pretrained(folder, **kwargs)
            if single is not None:
                pipe.register_modules(transformer=single)
            if cached:
                pipe.register_modules(**cached)
            return pipe
        except (OSError, ValueError, KeyError) as exc:
            raise ModelUnavailable(
                spec.id, spec.repo, f"the files in {folder} could not be loaded ({type(exc).__name__}: {exc}). "
                f"{download_hint(spec)}", reason=f"on this machine but could not be read ({type(exc).__name__}: {exc})"
            ) from None

    def current(self) -> LoadedModel | None:
        """The pipeline loaded now, if any."""
        return self._current

    def loaded(self) -> tuple[str, ...]:
        cur = self._current
        return (cur.spec.id,) if cur else ()

    def unload_all(self) -> int:
        """Drop every loaded pipeline and return how many were freed."""
        with self._lock:
            return self._release()

    def _release(self) -> int:
        if self._current is None:
            return 0
        self._current = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        return 1
