"""What a creator asks for: the typed generation request and its checks.

A request is frozen and checked when it is built (types and ranges that hold for every model);
`ModelSpec.resolve` (engine/core/registry.py) adds the chosen model's defaults and its family's real constraints. Nothing is rounded or
corrected silently: a value the model cannot take is refused with the rule that applies.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from .errors import InvalidRequest

QUANTIZATION_MODES: tuple[str, ...] = (
    "none", "torchao-int8", "torchao-fp8", "quanto-int8", "quanto-int4", "quanto-fp8", "fp8-layerwise",
)
OFFLOAD_MODES: tuple[str, ...] = ("auto", "none", "model", "group", "sequential")
ADAPTER_KINDS: tuple[str, ...] = ("auto", "lora", "hydralora")
# Speed (docs/speed.md): a profile, or the parts it stands for. What a model family takes is checked in
# Engine.prepare (engine/core/speed.py); here only what holds for every model.
SPEED_PROFILES: tuple[str, ...] = ("quality", "balanced", "fast")
CACHE_KINDS: tuple[str, ...] = ("none", "first-block", "taylorseer", "pab", "mag", "faster")
# Step caches whose number is a relative-change threshold (0-1]; the others take a whole interval in steps.
THRESHOLD_CACHES: tuple[str, ...] = ("first-block", "mag")
MAX_CACHE_INTERVAL = 20
ATTENTION_BACKENDS: tuple[str, ...] = (
    "auto", "native", "_native_math", "_native_efficient", "_native_flash", "_native_cudnn", "flex",
    "flash", "flash_varlen", "_flash_3", "flash_hub", "sage", "sage_varlen", "sage_hub", "xformers",
)
PARALLEL_MODES: tuple[str, ...] = ("none", "ulysses", "ring")
MAX_NARRATIVE_CHARS = 4000
MAX_SEED = 2**32 - 1

TagValue = tuple[str, ...]
# (max frames, max side) of each registry model, filled in by engine/core/registry.py: a value past the
# chosen model's limit is refused with that limit, not only with the range common to every model.
MODEL_LIMITS: dict[str, tuple[int, int]] = {}


def _one_of(field_name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidRequest(field_name, f"'{value}' is not allowed; choose one of: {', '.join(allowed)}")


def _int_in(field_name: str, value: Any, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field_name, f"must be a whole number from {low} to {high}{unit}, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(field_name, f"must be from {low} to {high}{unit}, got {value}")


def _float_in(field_name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(field_name, f"must be a number from {low:g} to {high:g}, got {value!r}")
    if not low <= float(value) <= high:
        raise InvalidRequest(field_name, f"must be from {low:g} to {high:g}, got {value}")


def normalize_tags(tags: Mapping[str, Any] | None) -> Mapping[str, TagValue]:
    """Tags as field id -> tuple of value ids, sorted by field, so equal tags compare equal."""
    if tags is None:
        return MappingProxyType({})
    if not isinstance(tags, Mapping):
        raise InvalidRequest("tags", "must map a field id (e.g. 'camera.movement') to a value id or a list of them")
    out: dict[str, TagValue] = {}
    for key in sorted(tags):
        raw = tags[key]
        if not isinstance(key, str) or not key:
            raise InvalidRequest("tags", f"field ids must be non-empty text, got {key!r}")
        values = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, (list, tuple)) else None
        if values is None or not all(isinstance(v, str) and v for v in values):
            raise InvalidRequest(f"tags.{key}", f"must be a value id or a list of value ids, got {raw!r}")
        if values:
            out[key] = values
    return MappingProxyType(out)


@dataclass(frozen=True)
class AdapterRef:
    """A fine-tuned adapter (LoRA or HydraLoRA) applied at a given strength."""

    path: str
    strength: float = 1.0
    kind: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise InvalidRequest("adapters.path", "must name an adapter file or folder")
        _float_in("adapters.strength", self.strength, -2.0, 2.0)
        _one_of("adapters.kind", self.kind, ADAPTER_KINDS)


@dataclass(frozen=True)
class GenerationRequest:
    """One clip to generate. `None` in a setting means "the model's default" until resolved."""

    narrative: str
    model: str = "wan2.1-t2v-1.3b"
    negative_prompt: str = ""
    tags: Mapping[str, TagValue] = field(default_factory=dict)
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: int | None = None
    steps: int | None = None
    guidance: float | None = None
    quantization: str = "none"
    offload: str = "auto"
    vae_tiling: bool | None = None
    adapters: tuple[AdapterRef, ...] = ()
    tag_encoder: str | None = None  # folder of a trained PKS tag encoder (dual-channel conditioning)
    tag_guidance: float | None = None  # separate guidance scale on the tags; None: plain CFG over both
    # Also write the tags into the text prompt. Unset: yes without a tag encoder, no with one (the
    # tags then reach the model through their own channel, undiluted by the narrative); resolved by
    # Engine.prepare, so a recorded request always says which.
    tags_in_prompt: bool | None = None
    transformer_file: str | None = None  # a GGUF or single .safetensors transformer (path or name in models/gguf)
    speed: str = "quality"  # a speed profile: what `cache` and `compile_blocks` are when unset
    cache: str | None = None  # step cache kind (CACHE_KINDS); None: the profile's
    cache_threshold: float | None = None  # the cache's threshold, or its interval in steps; None: the kind's default
    compile_blocks: bool | None = None  # torch.compile the repeated transformer blocks; None: the profile's
    attention: str = "auto"  # diffusers attention backend; auto: what diffusers picks (PyTorch SDPA)
    parallel: str = "none"  # context parallelism over the GPUs of a torchrun launch
    allow_soft_contradictions: bool = False  # "generate anyway": unusual tag pairs (pks soft contradictions)

    def __post_init__(self) -> None:
        if not isinstance(self.narrative, str) or not self.narrative.strip():
            raise InvalidRequest("narrative", "must describe the scene in words (it is empty)")
        if len(self.narrative) > MAX_NARRATIVE_CHARS:
            raise InvalidRequest("narrative", f"must be at most {MAX_NARRATIVE_CHARS} characters, got {len(self.narrative)}")
        if not isinstance(self.negative_prompt, str) or len(self.negative_prompt) > MAX_NARRATIVE_CHARS:
            raise InvalidRequest("negative_prompt", f"must be text of at most {MAX_NARRATIVE_CHARS} characters")
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidRequest("model", "must name a model id from the registry or a local folder")
        object.__setattr__(self, "tags", normalize_tags(self.tags))
        if self.seed is not None:
            _int_in("seed", self.seed, 0, MAX_SEED)
        max_frames, max_side = MODEL_LIMITS.get(self.model, (1024, 4096))
        if isinstance(self.num_frames, int) and not isinstance(self.num_frames, bool) and self.num_frames > max_frames:
            raise InvalidRequest("num_frames", f"this model takes at most {max_frames} frames, got {self.num_frames}")
        if self.num_frames is not None:  # the model's own range: the one the form's hint shows
            _int_in("num_frames", self.num_frames, 1, max_frames)
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and value > max_side:
                raise InvalidRequest(name, f"this model takes at most {max_side} pixels per side, got {value}")
            if value is not None:
                _int_in(name, value, 16, max_side, " pixels")
        if self.fps is not None:
            _int_in("fps", self.fps, 1, 60, " frames per second")
        if self.steps is not None:
            _int_in("steps", self.steps, 1, 200)
        if self.guidance is not None:
            _float_in("guidance", self.guidance, 0.0, 30.0)
            object.__setattr__(self, "guidance", float(self.guidance))
        _one_of("quantization", self.quantization, QUANTIZATION_MODES)
        _one_of("offload", self.offload, OFFLOAD_MODES)
        if self.vae_tiling is not None and not isinstance(self.vae_tiling, bool):
            raise InvalidRequest("vae_tiling", f"must be true, false or unset (auto), got {self.vae_tiling!r}")
        adapters = tuple(a if isinstance(a, AdapterRef) else AdapterRef(**a) for a in self.adapters)
        object.__setattr__(self, "adapters", adapters)
        if self.tag_encoder is not None and (not isinstance(self.tag_encoder, str) or not self.tag_encoder.strip()):
            raise InvalidRequest("tag_encoder", "must name the folder of a trained tag encoder, or be unset")
        if self.tag_guidance is not None:
            _float_in("tag_guidance", self.tag_guidance, 0.0, 30.0)
            if self.tag_encoder is None:
                raise InvalidRequest("tag_guidance", "needs a tag encoder (tag_encoder); without one tags only "
                                                     "reach the model through the text prompt")
        if self.transformer_file is not None and (not isinstance(self.transformer_file, str)
                                                  or not self.transformer_file.strip()):
            raise InvalidRequest("transformer_file", "must name a .gguf or .safetensors file, or be unset")
        if not isinstance(self.allow_soft_contradictions, bool):
            raise InvalidRequest("allow_soft_contradictions", f"must be true or false, got {self.allow_soft_contradictions!r}")
        if self.tags_in_prompt is not None and not isinstance(self.tags_in_prompt, bool):
            raise InvalidRequest("tags_in_prompt", f"must be true or false, got {self.tags_in_prompt!r}")
        if self.tags_in_prompt is False and self.tag_encoder is None:
            raise InvalidRequest("tags_in_prompt", "can be turned off only with a tag encoder, or the tags "
                                                   "would reach the model nowhere")

        self._check_speed()

    def _check_speed(self) -> None:
        _one_of("speed", self.speed, SPEED_PROFILES)
        if self.cache is not None:
            _one_of("cache", self.cache, CACHE_KINDS)
        if self.cache_threshold is not None:
            if self.cache is None or self.cache == "none":
                raise InvalidRequest("cache_threshold", "needs a cache kind (cache), e.g. first-block:0.1")
            if self.cache in THRESHOLD_CACHES:
                _float_in("cache_threshold", self.cache_threshold, 0.001, 1.0)
                object.__setattr__(self, "cache_threshold", float(self.cache_threshold))
            else:
                value = self.cache_threshold
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                _int_in("cache_threshold", value, 2, MAX_CACHE_INTERVAL, f" steps (the {self.cache} interval)")
                object.__setattr__(self, "cache_threshold", float(value))
        if self.compile_blocks is not None and not isinstance(self.compile_blocks, bool):
            raise InvalidRequest("compile_blocks", f"must be true, false or unset (the profile's), got "
                                                   f"{self.compile_blocks!r}")
        _one_of("attention", self.attention, ATTENTION_BACKENDS)
        _one_of("parallel", self.parallel, PARALLEL_MODES)

    @property
    def is_resolved(self) -> bool:
        return None not in (self.seed, self.width, self.height, self.num_frames, self.fps, self.steps, self.guidance)

    # Serialisation: the JSON embedded in every mp4 and stored with every history row.
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["tags"] = {k: list(v) if len(v) > 1 else v[0] for k, v in self.tags.items()}
        data["adapters"] = [asdict(a) for a in self.adapters]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GenerationRequest":
        if not isinstance(data, Mapping):
            raise InvalidRequest("request", "must be a JSON object of generation settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(unknown[0], f"is not a generation setting; known settings: {', '.join(sorted(known))}")
        if "narrative" not in data:
            raise InvalidRequest("narrative", "is missing")
        values = dict(data)
        values["adapters"] = tuple(AdapterRef(**a) if isinstance(a, Mapping) else a for a in values.get("adapters", ()))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "GenerationRequest":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidRequest("request", f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
