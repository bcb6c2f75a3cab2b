"""What a creator asks for: the typed generation request and its checks.

A request is frozen and checked when it is built (types and ranges that hold for every model);
`ModelSpec.resolve` (engine/core/registry.py) adds the chosen model's defaults and its family's real constraints. Nothing is rounded or
corrected silently: a value the model cannot take is refused with the rule that applies.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

from .errors import InvalidRequest
from .quantization import QUANTIZATION_MODES  # the registry's names; the form imports them from here
from .request_schema import NO_DEFAULT, check_declared, declared, float_in, int_in, one_of, setting

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
        float_in("adapters.strength", self.strength, -2.0, 2.0)
        one_of("adapters.kind", self.kind, ADAPTER_KINDS)


@dataclass(frozen=True)
class GenerationRequest:
    """One clip to generate. `None` in a setting means "the model's default" until resolved.

    Each setting is declared once here (engine/core/request_schema.py): its checks, label, help,
    flag and role come from the declaration; `__post_init__` adds only the rules between fields."""

    # Each setting: kind, label and checks; then its flag (the API parameter is named after it);
    # then its roles (same clip, form, API, eval suite, preset) and an example value for the tests.
    narrative: str = setting(
        NO_DEFAULT, kind="text", label="Narrative",
        flag="--narrative", metavar="TEXT",
        example="a cat leaps",
        help="what happens in the clip, in words (required unless --preset/--from gives one)")
    model: str = setting(
        "wan2.1-t2v-1.3b", kind="text", label="Model", required=True,
        refusal="must name a model id from the registry or a local folder",
        flag="--model",
        suite="system", preset=True, example="preview",
        help="model id ({models}) or a local diffusers folder (default: {default_model}, or ANIMATRIX_DEFAULT_MODEL)")
    negative_prompt: str = setting(
        "", kind="text", label="Negative prompt", max_chars=MAX_NARRATIVE_CHARS,
        refusal=f"must be text of at most {MAX_NARRATIVE_CHARS} characters",
        flag="--negative", metavar="TEXT",
        suite="generation", example="blurry",
        help="what to avoid (default: none, or the preset's)")
    tags: Mapping[str, TagValue] = setting(
        factory=dict, kind="tags", label="Tags",
        flag="--tag", metavar="FIELD=VALUE",
        example={"camera.movement": ("whip_pan",), "vfx.effects": ("sparkles", "speed_lines")},
        help="a production tag, e.g. camera.movement=whip_pan; repeat for several (multi-select fields take "
             "several values). Fields: python -m engine tags; a field's values: python -m engine tags FIELD")
    seed: int | None = setting(
        kind="int", label="Seed", low=0, high=MAX_SEED,
        flag="--seed", metavar="N",
        preset=True, example=7,
        help="0 to {high} (default: a random seed, recorded in the history)")
    width: int | None = setting(
        kind="int", label="Width", low=16, high=4096, unit=" pixels",
        flag="--width", metavar="PX",
        suite="generation", preset=True, example=64,
        help="pixels, 16 to the model's limit ({most} at most; default the model's: {defaults})")
    height: int | None = setting(
        kind="int", label="Height", low=16, high=4096, unit=" pixels",
        flag="--height", metavar="PX",
        suite="generation", preset=True, example=48,
        help="pixels (default the model's: {defaults})")
    num_frames: int | None = setting(
        kind="int", label="Frames", low=1, high=1024,
        flag="--frames", metavar="N",
        suite="generation", preset=True, example=9,
        help="frames in the clip, 1 to the model's limit ({most} at most; default the model's: {defaults})")
    fps: int | None = setting(
        kind="int", label="FPS", low=1, high=60, unit=" frames per second",
        flag="--fps", metavar="N",
        suite="generation", preset=True, example=12,
        help="frames per second of the mp4, 1 to 60 (default the model's: {defaults})")
    steps: int | None = setting(
        kind="int", label="Steps", low=1, high=200,
        flag="--steps", metavar="N",
        suite="both", preset=True, example=3,
        help="denoising steps, 1 to 200 (default the model's: {defaults})")
    guidance: float | None = setting(
        kind="float", label="Guidance", low=0.0, high=30.0,
        flag="--guidance", metavar="SCALE",
        suite="both", preset=True, example=4.5,
        help="classifier-free guidance scale, 0 to 30 (default the model's: {defaults})")
    quantization: str = setting(
        "none", kind="choice", label="Quantization", choices=QUANTIZATION_MODES,
        flag="--quantization", group="memory",
        suite="system", example="quanto-int8",
        help="weight quantization (default none)")
    offload: str = setting(
        "auto", kind="choice", label="Offload", choices=OFFLOAD_MODES,
        flag="--offload", group="memory",
        same=False, suite="both", example="model",
        help="CPU offload (default auto: chosen from free VRAM)")
    vae_tiling: bool | None = setting(
        kind="bool", label="VAE tiling", unset="auto",
        flag="--vae-tiling", group="memory",
        same=False, suite="generation", example=True,
        help="decode the video in tiles to save memory (default: on where memory is short)")
    adapters: tuple[AdapterRef, ...] = setting(
        (), kind="adapters", label="Adapters",
        flag="--adapter", metavar="PATH[:STRENGTH]", group="adapters",
        suite="system", example=(AdapterRef("style.safetensors", 0.5),),
        help="a LoRA or HydraLoRA file or folder, strength -2 to 2 (default 1); repeat for several")
    # Folder of a trained PKS tag encoder (dual-channel conditioning).
    tag_encoder: str | None = setting(
        kind="text", label="Tag encoder", required=True,
        refusal="must name the folder of a trained tag encoder, or be unset",
        flag="--tag-encoder", metavar="FOLDER", group="tags",
        suite="system", example="encoder",
        help="a trained PKS tag encoder: tags also go through cross-attention and AdaLN (default none)")
    # A separate guidance scale on the tags; None: plain CFG over both.
    tag_guidance: float | None = setting(
        kind="float", label="Tag guidance", low=0.0, high=30.0,
        flag="--tag-guidance", metavar="SCALE", group="tags",
        suite="system", example=2.0,
        help="separate guidance scale on the tags, 0 to 30 (needs --tag-encoder; default: plain guidance over "
             "text and tags)")
    # Also write the tags into the text prompt. Unset: yes without a tag encoder, no with one (the
    # tags then reach the model through their own channel, undiluted by the narrative); resolved by
    # Engine.prepare, so a recorded request always says which.
    tags_in_prompt: bool | None = setting(
        kind="bool", label="Also write tags into the prompt",
        flag="--tags-in-prompt", group="tags",
        suite="system", example=False,
        help="also write the tags into the text prompt (default on)")
    # A GGUF or single .safetensors transformer (a path or a name in models/gguf).
    transformer_file: str | None = setting(
        kind="text", label="Transformer file", required=True,
        refusal="must name a .gguf or .safetensors file, or be unset",
        flag="--transformer", metavar="FILE", group="memory",
        suite="system", example="wan-q8.gguf",
        help="the transformer from one file: a community GGUF (Q8_0 … Q4_K) or a single .safetensors; a path, "
             "or a file name in <data dir>/models/gguf/ (the rest comes from --model)")
    # A speed profile: what `cache` and `compile_blocks` are when unset.
    speed: str = setting(
        "quality", kind="choice", label="Speed", choices=SPEED_PROFILES,
        flag="--speed", group="speed",
        suite="system", example="balanced",
        help="speed profile (docs/speed.md; default quality)")
    cache: str | None = setting(
        kind="choice", label="Step cache", choices=CACHE_KINDS,
        flag="--cache", metavar="KIND[:NUMBER]", group="speed",
        suite="system", example="first-block",
        help="step cache instead of the profile's, one of {choices}; first-block and mag take a threshold (0-1], "
             "the others an interval in steps (default: the profile's)")
    # The cache's threshold, or its interval in steps; None: the kind's default. It travels inside
    # `cache` on every surface (KIND:NUMBER), so it has no flag of its own.
    cache_threshold: float | None = setting(
        kind="float", label="Step cache",
        carried_by="cache", group="speed",
        suite="system", example=0.25)
    compile_blocks: bool | None = setting(
        kind="bool", label="Compile blocks", unset="the profile's",
        flag="--compile", group="speed",
        suite="system", example=True,
        help="torch.compile the repeated transformer blocks (slow first job; default: the profile's)")
    # The diffusers attention backend; auto: what diffusers picks (PyTorch SDPA).
    attention: str = setting(
        "auto", kind="choice", label="Attention backend", choices=ATTENTION_BACKENDS,
        flag="--attention", group="speed",
        suite="system", example="native",
        help="diffusers attention backend (default auto)")
    # Context parallelism over the GPUs of a torchrun launch: the command line only.
    parallel: str = setting(
        "none", kind="choice", label="Parallel GPUs", choices=PARALLEL_MODES,
        flag="--parallel", group="speed",
        same=False, form=False, api=False, example="ulysses",
        help="one clip over several GPUs (under torchrun; default none)")
    # "Generate anyway": unusual tag pairs (pks soft contradictions); the form's own button.
    allow_soft_contradictions: bool = setting(
        False, kind="bool", label="Generate anyway",
        flag="--anyway",
        same=False, form=False, example=True,
        help="generate even when two tags are an unusual pair (a soft contradiction)")

    def __post_init__(self) -> None:
        # Every field's own rule is checked, and all refusals come back together (the first named
        # first): three bad boxes are three messages at once, not one a click.
        problems: list[InvalidRequest] = []
        if not isinstance(self.narrative, str) or not self.narrative.strip():
            problems.append(InvalidRequest("narrative", "must describe the scene in words (it is empty)"))
        elif len(self.narrative) > MAX_NARRATIVE_CHARS:
            problems.append(InvalidRequest("narrative", f"must be at most {MAX_NARRATIVE_CHARS} characters, "
                                                        f"got {len(self.narrative)}"))
        try:
            object.__setattr__(self, "tags", normalize_tags(self.tags))
        except InvalidRequest as exc:
            problems.append(exc)
        max_frames, max_side = MODEL_LIMITS.get(self.model, (1024, 4096))
        for name, most, what in (("num_frames", max_frames, "frames"), ("width", max_side, "pixels per side"),
                                 ("height", max_side, "pixels per side")):
            value = getattr(self, name)  # past the chosen model's limit: say it is that model's
            if isinstance(value, int) and not isinstance(value, bool) and value > most:
                problems.append(InvalidRequest(name, f"this model takes at most {most} {what}, got {value}"))
        problems += check_declared(self, {"num_frames": max_frames, "width": max_side, "height": max_side},
                                   skip=("narrative", *(p.field for p in problems)))
        if problems:
            raise InvalidRequest(problems[0].field, problems[0].reason, problems[1:])
        adapters = tuple(a if isinstance(a, AdapterRef) else AdapterRef(**a) for a in self.adapters)
        object.__setattr__(self, "adapters", adapters)
        if self.tag_guidance is not None and self.tag_encoder is None:
            raise InvalidRequest("tag_guidance", "needs a tag encoder (tag_encoder); without one tags only "
                                                 "reach the model through the text prompt")
        if self.tags_in_prompt is False and self.tag_encoder is None:
            raise InvalidRequest("tags_in_prompt", "can be turned off only with a tag encoder, or the tags "
                                                   "would reach the model nowhere")
        self._check_cache_threshold()

    def _check_cache_threshold(self) -> None:
        if self.cache_threshold is None:
            return
        if self.cache is None or self.cache == "none":
            raise InvalidRequest("cache_threshold", "needs a cache kind (cache), e.g. first-block:0.1")
        if self.cache in THRESHOLD_CACHES:
            float_in("cache_threshold", self.cache_threshold, 0.001, 1.0)
            object.__setattr__(self, "cache_threshold", float(self.cache_threshold))
        else:
            value = self.cache_threshold
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            int_in("cache_threshold", value, 2, MAX_CACHE_INTERVAL, f" steps (the {self.cache} interval)")
            object.__setattr__(self, "cache_threshold", float(value))

    @property
    def is_resolved(self) -> bool:
        return None not in (self.seed, self.width, self.height, self.num_frames, self.fps, self.steps, self.guidance)

    # Serialisation: the JSON embedded in every mp4 and stored with every history row.
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f, spec in declared(type(self)) if spec.recorded}
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
        values["adapters"] = tuple(AdapterRef(**a) if isinstance(a, Mapping) else a for a in values.get("adapters",
        ()))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "GenerationRequest":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidRequest("request", f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
