"""Generation: a typed request in, frames and timings out, with progress and cancellation.

`Engine.prepare` does every check that needs no weights (model, tags, family shape rules,
quantization/offload against this machine) so a bad request is refused before anything loads
or is written. `Engine.generate` then loads (cached), encodes the text once, denoises with a
per-step callback that reports progress and honours the cancel token, and decodes.
"""
from __future__ import annotations

import logging
import random
import resource
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from .errors import GenerationCancelled, InvalidRequest, ModelUnavailable, OutOfMemory
from .loading import (LoadedModel, ModelManager, download_hint, is_available_locally, locate_weights,
                      transformer_config, weights_size)
from .prompt_cache import PromptCache
from .previews import LivePreview, PreviewDecoder, PreviewRun
from .memory import MemoryPlan, check_combination, lower_profile, plan_memory, resolve_device
from .registry import ModelSpec, resolve_model
from .requests import GenerationRequest, MAX_SEED
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One progress report. `stage` is loading, loading model (the pipeline is read from disk for this
    job: the first job of a model, or after another model or profile), encoding, denoising or decoding."""

    stage: str
    step: int
    total: int
    elapsed_s: float
    eta_s: float | None

    def describe(self) -> str:
        if self.stage == "loading model":
            return "loading the model (the first job of a model can take minutes)…"
        if self.stage != "denoising":
            return f"{self.stage}…"
        eta = f", about {self.eta_s:.0f}s left" if self.eta_s is not None else ""
        return f"step {self.step} of {self.total} ({self.elapsed_s:.1f}s{eta})"


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Set from any thread; the generation stops at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class Timings:
    load_s: float
    encode_s: float
    denoise_s: float
    decode_s: float
    total_s: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class PreparedRequest:
    """A request with every default filled in, checked, and its text prompt compiled."""

    request: GenerationRequest
    spec: ModelSpec
    compiled_prompt: str
    taxonomy_version: str
    device: str
    transformer_file: str | None = None  # the request's transformer file, found and checked


@dataclass(frozen=True)
class GenerationResult:
    prepared: PreparedRequest
    frames: np.ndarray  # [frames, height, width, 3] uint8
    timings: Timings
    peak_memory_bytes: int
    memory_profile: str

    @property
    def request(self) -> GenerationRequest:
        return self.prepared.request

    @property
    def is_noise(self) -> bool:
        return self.prepared.spec.is_preview

    def embedded_settings(self) -> dict[str, Any]:
        """Everything needed to reproduce the clip from the file alone."""
        return {
            "engine_version": __version__,
            "request": self.request.to_dict(),
            "compiled_prompt": self.prepared.compiled_prompt,
            "model_repo": self.prepared.spec.repo,
            "taxonomy_version": self.prepared.taxonomy_version,
            "memory_profile": self.memory_profile,
        }


TEXT_TOKENS = 512  # the pipelines' own default for a plain call, and what training pads to


class _Stop(Exception):
    """Raised inside the step callback to leave the denoising loop at once."""


class Engine:
    def __init__(self, settings: Settings, models: ModelManager | None = None) -> None:
        self.settings = settings
        self.models = models or ModelManager(settings)
        self._adapters: Any = None  # the adapters applied to the loaded pipeline, if any
        self._tags: tuple[Any, str, Any] | None = None  # (transformer, encoder folder, TagChannel)
        self.prompts = PromptCache(settings.data_dir / "cache" / "prompt_embeds")
        self._preview_decoder: tuple[Any, PreviewDecoder] | None = None  # (the VAE it was made for, decoder)

    def prepare(self, request: GenerationRequest) -> PreparedRequest:
        from .pks import load_taxonomy

        spec = resolve_model(request.model)
        taxonomy = load_taxonomy()
        tags = taxonomy.validate_tags(request.tags)
        taxonomy.check_soft(tags, anyway=request.allow_soft_contradictions)
        device = resolve_device(self.settings.device)
        check_combination(request.quantization, request.offload, device)
        seed = request.seed if request.seed is not None else random.SystemRandom().randint(0, MAX_SEED)
        resolved = spec.resolve(replace(request, tags=tags), seed)  # the model's shape rules
        resolved = self._check_speed(resolved, spec, device)
        if spec.builtin == "mini" and resolved.tag_encoder is None and is_available_locally(spec, self.settings):
            # The mini model was trained with its tag encoder: tags reach it through their own channel.
            from .mini_model import TAG_ENCODER, ensure_mini_model

            resolved = replace(resolved, tag_encoder=str(ensure_mini_model(self.settings.models_dir) / TAG_ENCODER))
        if resolved.tags_in_prompt is None:  # the dual channel by default: tags off the prompt with an encoder
            resolved = replace(resolved, tags_in_prompt=resolved.tag_encoder is None)
        if spec.family.has_second_expert and (request.adapters or request.tag_encoder is not None):
            # Both experts would need their own weights; applying them to one would change half the steps.
            what = "adapters" if request.adapters else "tag_encoder"
            raise InvalidRequest(what, f"{spec.id} has two experts (transformer and transformer_2); adapters and "
                                       "tag encoders drive one transformer and are not supported on it yet")
        if request.adapters:
            from .adapters import check_adapters

            # Missing, mislabelled or misfit files (layer shapes too, where the model's config is here) refused
            # before queueing.
            check_adapters(request.adapters, spec, transformer_config(spec, self.settings))
        if resolved.tag_encoder is not None:
            from .tag_encoder import check_tag_encoder

            # Its config only, against the model's config.json where the weights are here: weights load once, later.
            check_tag_encoder(resolved.tag_encoder, taxonomy, spec, transformer_config(spec, self.settings))
        if spec.builtin == "mini" and not is_available_locally(spec, self.settings):
            # Nothing to download: refused before anything is queued or recorded.
            raise ModelUnavailable(spec.id, spec.repo, f"its trained weights are not here. {download_hint(spec)}",
                                   reason="its trained weights are not on this machine")
        if self.settings.offline and not is_available_locally(spec, self.settings):
            # Offline, a model without weights cannot run: say so now (after the request's own mistakes).
            raise ModelUnavailable(spec.id, spec.repo, f"this machine is offline and the weights are not here. "
                                                       f"{download_hint(spec)}",
                                   reason="not on this machine, and it is offline")
        transformer_file = self._check_transformer_file(request, spec)
        prompt = taxonomy.compile_prompt(resolved.narrative, tags if resolved.tags_in_prompt else {})
        return PreparedRequest(resolved, spec, prompt, taxonomy.version, device, transformer_file)

    def _check_speed(self, request: GenerationRequest, spec: ModelSpec, device: str) -> GenerationRequest:
        """The speed profile's parts written into the request, and refused here if they cannot run."""
        from .speed import check_speed, resolve_speed

        resolved = resolve_speed(request, spec.family)
        config = transformer_config(spec, self.settings) if resolved.parallel != "none" else None
        heads = int(config["num_attention_heads"]) if config and "num_attention_heads" in config else None
        check_speed(resolved, spec.family, device, offline=self.settings.offline, num_heads=heads)
        return resolved

    def _check_transformer_file(self, request: GenerationRequest, spec: ModelSpec) -> str | None:
        """A GGUF / .safetensors transformer: found, readable, and shaped like the model's (no weights read)."""
        if request.transformer_file is None:
            return None
        from .single_file import check_transformer_file, find_transformer_file

        # With a quantizing mode the file stays as it is and the mode applies to the text encoder.
        path = find_transformer_file(request.transformer_file, self.settings.models_dir / "gguf")
        check_transformer_file(path, spec.family, transformer_config(spec, self.settings))
        return str(path.resolve())

    def free_memory(self) -> int:
        self._adapters = None
        self._preview_decoder = None
        self._tags = None
        return self.models.unload_all()

    def generate(self, request: GenerationRequest | PreparedRequest, *, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, preview: LivePreview | None = None) -> GenerationResult:
        """`preview`: where this run's live previews go (engine/core/previews.py); None: no previews."""
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        req = prepared.request
        report = progress or (lambda _p: None)
        started = time.perf_counter()
        try:
            report(Progress("loading", 0, req.steps or 0, 0.0, None))
            embeds = self._cached_prompt(prepared)
            _folder, plan = self._plan(prepared)
            if not self.models.holds(prepared.spec, plan, text_encoder=embeds is None):
                report(Progress("loading model", 0, req.steps or 0, time.perf_counter() - started, None))
            loaded = self.models.load(prepared.spec, plan, text_encoder=embeds is None)
            # This job's own loading time (imports, finding the weights, reading them; ~0 when warm).
            load_s = time.perf_counter() - started
            if cancel is not None and cancel.cancelled:
                raise GenerationCancelled("cancelled before denoising started")
            return self._run(prepared, loaded, report, cancel, started, embeds, load_s, preview)
        except Exception as exc:
            if _is_oom(exc):
                raise OutOfMemory(
                    f"out of memory at {req.width}x{req.height}x{req.num_frames} with quantization={req.quantization}, "
                    f"offload={req.offload}; try {lower_profile(req.quantization, req.offload)}"
                ) from None
            raise

    def _plan(self, prepared: PreparedRequest) -> tuple[Path, MemoryPlan]:
        req = prepared.request
        folder = locate_weights(prepared.spec, self.settings)
        return folder, plan_memory(req.quantization, req.offload, req.vae_tiling, prepared.device,
                                   weights_size(folder), (req.width or 0) * (req.height or 0),
                                   prepared.transformer_file)

    def _load(self, prepared: PreparedRequest, *, text_encoder: bool = True) -> LoadedModel:
        _folder, plan = self._plan(prepared)
        return self.models.load(prepared.spec, plan, text_encoder=text_encoder)

    def _prompt_key(self, prepared: PreparedRequest, folder: Path | None, plan: MemoryPlan) -> str:
        req = prepared.request
        # The text encoder's quantization changes its output: an int8 encoding never stands in for bf16.
        return self.prompts.key(folder, prepared.spec.id, prepared.compiled_prompt, req.negative_prompt,
                                TEXT_TOKENS, (req.guidance or 0) > 1.0, f"{plan.dtype_name}/{plan.quantization}")

    def _cached_prompt(self, prepared: PreparedRequest) -> tuple[Any, Any] | None:
        """The job's encoded prompts from the prompt cache, read before loading (on the CPU), so a job
        whose prompts are all there loads no text encoder; None when it must encode."""
        if not prepared.spec.family.encodes_prompt_up_front:
            return None
        folder, plan = self._plan(prepared)
        return self.prompts.get(self._prompt_key(prepared, folder, plan), "cpu", None)

    def _run(self, prepared: PreparedRequest, loaded: LoadedModel, report: ProgressCallback,
             cancel: CancelToken | None, started: float, embeds: tuple[Any, Any] | None = None,
             load_s: float = 0.0, preview: LivePreview | None = None) -> GenerationResult:
        import torch

        req = prepared.request
        pipe = loaded.pipe
        from .adapters import apply_adapters  # torch-heavy: imported only when generating

        # Called for every request: with no adapters it removes the previous request's ones.
        self._adapters = apply_adapters(pipe, req.adapters, req.model, previous=self._adapters)
        from .speed import apply_speed

        apply_speed(pipe, req, loaded.plan.offload)  # likewise: the previous job's cache hooks come off
        steps = int(req.steps or 1)
        on_cuda = prepared.device == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        generator = torch.Generator(device="cpu").manual_seed(int(req.seed or 0))
        call: dict[str, Any] = dict(
            height=req.height, width=req.width, num_frames=req.num_frames, num_inference_steps=steps,
            guidance_scale=req.guidance, generator=generator, output_type="np",
        )
        t_encode = time.perf_counter()
        report(Progress("encoding", 0, steps, t_encode - started, None))
        if prepared.spec.family.encodes_prompt_up_front:
            # Encoding once up front gives an honest encode time and the same embeddings diffusers would make;
            # kept on disk, a regeneration, a Best of N or a seed sweep never runs the text encoder again.
            with_negative = (req.guidance or 0) > 1.0
            device, dtype = pipe._execution_device, pipe.transformer.dtype
            if embeds is not None:
                pos = embeds[0].to(device=device, dtype=dtype)
                neg = None if embeds[1] is None else embeds[1].to(device=device, dtype=dtype)
            else:
                key = self._prompt_key(prepared, loaded.folder, loaded.plan)
                with torch.no_grad():
                    pos, neg = pipe.encode_prompt(
                        prompt=prepared.compiled_prompt, negative_prompt=req.negative_prompt or None,
                        do_classifier_free_guidance=with_negative, device=pipe._execution_device,
                        max_sequence_length=TEXT_TOKENS,
                    )
                self.prompts.put(key, pos, neg)
            call.update(prompt_embeds=pos, negative_prompt_embeds=neg)
        else:
            call.update(prompt=prepared.compiled_prompt, negative_prompt=req.negative_prompt or None)
        tag_scope = self._tag_scope(pipe, prepared, call)
        previews = self._previews(pipe, prepared, preview)
        if previews is not None:
            call["callback_on_step_end_tensor_inputs"] = ["latents"]  # the pipelines' default, said out loud
        t_denoise = time.perf_counter()
        marks: list[float] = []

        def on_step(_pipe: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if previews is not None:
                previews.step(i + 1, steps, kwargs.get("latents"))
            now = time.perf_counter()
            marks.append(now)
            done = i + 1
            per_step = (now - t_denoise) / done
            report(Progress("denoising", done, steps, now - started, per_step * (steps - done)))
            if cancel is not None and cancel.cancelled and done < steps:
                raise _Stop()
            return {}

        try:
            # no_grad rather than inference_mode: quanto's int4 weights cannot run on inference tensors.
            with torch.no_grad(), tag_scope, previews or nullcontext():
                out = pipe(callback_on_step_end=on_step, **call)
        except _Stop:
            raise GenerationCancelled(f"cancelled at step {len(marks)} of {steps}") from None
        t_end = time.perf_counter()
        last_step = marks[-1] if marks else t_denoise
        frames = np.asarray(out.frames[0])
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        timings = Timings(
            load_s=load_s, encode_s=t_denoise - t_encode, denoise_s=last_step - t_denoise,
            decode_s=t_end - last_step, total_s=t_end - started,
        )
        return GenerationResult(prepared, frames, timings, _peak_memory(on_cuda), _profile(loaded))

    def _previews(self, pipe: Any, prepared: PreparedRequest, preview: LivePreview | None) -> PreviewRun | None:
        """This run's previews, or None. The pipeline's decoder is made at the first due step, once per
        VAE (a linear fit, kept on disk); a VAE that cannot be fitted means no previews, never no clip."""
        if preview is None:
            return None

        def decoder() -> PreviewDecoder:
            from .previews import decoder_for

            held = self._preview_decoder
            if held is None or held[0] is not pipe.vae:
                held = self._preview_decoder = (pipe.vae, decoder_for(pipe, self.settings.data_dir / "cache"
                                                                      / "previews"))
            return held[1]

        return PreviewRun(preview, decoder, pipe.scheduler, float(prepared.request.fps or 16),
                          prepared.spec.family.frame_stride)

    def _tag_scope(self, pipe: Any, prepared: PreparedRequest, call: dict[str, Any]) -> Any:
        """The tag channel for this call (dual-channel conditioning), or a no-op without an encoder."""
        req = prepared.request
        held = self._tags
        if held is not None and (req.tag_encoder is None or held[0] is not pipe.transformer
                                 or held[1] != req.tag_encoder):
            if held[0] is pipe.transformer:
                held[2].detach()  # the hooks come off; the base weights were never touched
            self._tags = held = None
        if req.tag_encoder is None:
            return nullcontext()
        from .conditioning import attach_tag_encoder, pipeline_text_guidance, tags_for_call

        if held is None:
            from .pks import load_taxonomy
            from .tag_encoder import load_tag_encoder

            encoder = load_tag_encoder(req.tag_encoder, load_taxonomy(), prepared.spec)
            encoder.to(device=pipe.transformer.device, dtype=pipe.transformer.dtype).eval()
            held = self._tags = (pipe.transformer, req.tag_encoder, attach_tag_encoder(pipe.transformer, encoder))
        return tags_for_call(held[2], req.tags, tag_guidance_scale=req.tag_guidance,
                             text_guidance_scale=pipeline_text_guidance(pipe, call))


def _profile(loaded: LoadedModel) -> str:
    p = loaded.plan
    return f"device={p.device} dtype={p.dtype_name} quantization={p.quantization} offload={p.offload} vae_tiling={p.vae_tiling}"


def _peak_memory(on_cuda: bool) -> int:
    """Peak accelerator memory of this run on CUDA; otherwise the process's peak resident memory."""
    if on_cuda:
        import torch

        return int(torch.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
