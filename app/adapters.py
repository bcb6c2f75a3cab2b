"""UI values <-> engine requests, typed, with no Gradio in sight.

The Create tab's components hold loosely typed values (a Number may give 64.0, an empty box
None, a single-select dropdown "" for "not set"). `FormValues` is the same form with those
values normalised; `request_from_form` turns it into a `GenerationRequest`, and the reverse
functions fill the form from a history entry or a preset. The order of `form_keys()` is the
order of the Create tab's input components, so handlers can take `*values`: the scalar
settings, one entry per tag field, then (path, strength) for each adapter slot.

A transformer file (a GGUF or single .safetensors replacing the model folder's transformer) is a
scalar setting like quantization: kept by "Reuse settings", never stored in a preset.

Nothing is corrected silently: a value the engine refuses comes back as `InvalidRequest`, and
`ui_message` names the field the way the form labels it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from engine.core.errors import InvalidRequest, ModelUnavailable
from engine.core.pks import TagField, Taxonomy
from engine.core.presets import SETTING_KEYS, Preset
from engine.core.registry import REGISTRY, ModelSpec, resolve_model
from engine.core.request_schema import declared, labels, merge_settings, parse_cache
from engine.core.requests import AdapterRef, GenerationRequest
from engine.core.toolkit.numbers import check_number

UNSET = ""  # the "not set" choice of a single-select tag dropdown
VAE_TILING_CHOICES: tuple[str, ...] = ("auto", "on", "off")
SCALAR_KEYS: tuple[str, ...] = (
    "model", "narrative", "negative_prompt", "random_seed", "seed", "width", "height", "num_frames", "fps",
    "steps", "guidance", "quantization", "offload", "vae_tiling", "transformer_file",
    "speed", "cache", "compile_blocks", "attention",
)
INT_SETTINGS: tuple[str, ...] = ("width", "height", "num_frames", "fps", "steps")
TAG_ENCODER_KEYS: tuple[str, ...] = ("tag_encoder", "tag_guidance", "tags_in_prompt")  # after the adapter slots
MAX_ADAPTERS = 3  # adapter slots in the Create tab; the engine itself takes any number
DEFAULT_STRENGTH = 1.0
# Settings a preset stores, but its model and the seed (saved only when fixed).
PRESET_NUMBER_KEYS: tuple[str, ...] = tuple(k for k in SETTING_KEYS if k not in ("model", "seed"))
# How the form names each field in messages: the request's declared labels, and the form's own.
FIELD_LABELS: Mapping[str, str] = MappingProxyType({
    **labels(GenerationRequest), "random_seed": "Random seed", "status": "Status", "id": "Entry",
    "tag": "Tag filter", "name": "Preset name", "description": "Description", "slug": "Preset",
    "preset": "Preset file", "adapters.path": "Adapter", "adapters.strength": "Adapter strength",
    "adapters.kind": "Adapter kind", "adapters.fuse": "Adapter merge",
})
NO_TRANSFORMER_FILE = "none"  # the dropdown's word for "the model folder's own transformer"

Tags = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class FormValues:
    """The Create tab's values, normalised. `None` in a setting means "the model's default"."""

    model: str
    narrative: str = ""
    negative_prompt: str = ""
    tags: Tags = field(default_factory=dict)
    random_seed: bool = True
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: int | None = None
    steps: int | None = None
    guidance: float | None = None
    quantization: str = "none"
    offload: str = "auto"
    vae_tiling: str = "auto"
    transformer_file: str = ""  # a GGUF / .safetensors path or a name in models/gguf; "" for the folder's own
    adapters: tuple[AdapterRef, ...] = ()  # at most MAX_ADAPTERS, in slot order
    tag_encoder: str = ""  # folder of a saved tag encoder; "" for none (tags go through the prompt only)
    tag_guidance: float | None = None  # None: plain CFG over text and tags together
    tags_in_prompt: bool = True
    speed: str = "quality"
    cache: str = ""  # KIND[:NUMBER]; "" for the speed profile's own
    compile_blocks: bool = False
    attention: str = "auto"


def adapter_keys() -> tuple[str, ...]:
    """The adapter slots' keys: ("adapter:1", "strength:1", "adapter:2", ...)."""
    return tuple(key for i in range(1, MAX_ADAPTERS + 1) for key in (f"adapter:{i}", f"strength:{i}"))


def form_keys(taxonomy: Taxonomy) -> tuple[str, ...]:
    """Component order of the Create tab: the scalar inputs, one entry per tag field, the adapter slots,
    then the tag encoder, tag guidance and "tags in prompt"."""
    return SCALAR_KEYS + tuple(f"tag:{f.id}" for f in taxonomy.fields) + adapter_keys() + TAG_ENCODER_KEYS


# -- component values <-> FormValues --------------------------------------------------------------
def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# A box left empty means "the model's default"; otherwise text and 24.0 are numbers, as a form gives them.
def _whole(name: str, value: Any) -> int | None:
    return None if _blank(value) else int(check_number(name, value, whole=True, lenient=True))


def _number(name: str, value: Any) -> float | None:
    return None if _blank(value) else float(check_number(name, value, lenient=True))


def _tag_value(f: TagField, raw: Any) -> tuple[str, ...]:
    """A dropdown's value as a tuple of value ids ("" and None mean "not set")."""
    if raw is None or raw == UNSET:
        return ()
    items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else None
    if items is None or not all(isinstance(v, str) for v in items):
        raise InvalidRequest(f"tags.{f.id}", f"must be a value id or a list of them, got {raw!r}")
    return tuple(v for v in items if v != UNSET)


def _adapters(raw: Mapping[str, Any]) -> tuple[AdapterRef, ...]:
    """The filled adapter slots (an empty path is an empty slot, whatever its strength)."""
    out: list[AdapterRef] = []
    for i in range(1, MAX_ADAPTERS + 1):
        path = raw[f"adapter:{i}"]
        if path is None or (isinstance(path, str) and not path.strip()):
            continue
        if not isinstance(path, str):
            raise InvalidRequest("adapters.path", f"must be the path of an adapter, got {path!r}")
        strength = _number("adapters.strength", raw[f"strength:{i}"])
        ref = AdapterRef(path.strip(), DEFAULT_STRENGTH if strength is None else strength)
        if any(a.path == ref.path for a in out):
            raise InvalidRequest("adapters.path", f"{ref.path} is picked twice; use one slot and set its strength")
        out.append(ref)
    return tuple(out)


def _tag_encoder(value: Any) -> str:
    if value is None or value == "None":  # "None" is the dropdown's label for no encoder
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("tag_encoder", f"must be the folder of a tag encoder, got {value!r}")
    return value.strip()


def _transformer_file(value: Any) -> str:
    if value is None or (isinstance(value, str) and value.strip().lower() == NO_TRANSFORMER_FILE):
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("transformer_file", f"must name a .gguf or .safetensors file, got {value!r}")
    return value.strip()  # whether the file exists and fits is the engine's check, when the job is submitted


def _cache_text(value: Any) -> str:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "profile")):
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("cache", f"must be KIND or KIND:NUMBER (e.g. first-block:0.1), got {value!r}")
    return value.strip()


def _cache_parts(text: str) -> tuple[str | None, float | None]:
    """The form's "KIND[:NUMBER]" as (kind, number); ("", ) is the profile's own: (None, None)."""
    if not text:
        return None, None
    try:
        return parse_cache(text)
    except ValueError:
        raise InvalidRequest("cache", f"'{text}' is not KIND or KIND:NUMBER (e.g. first-block:0.1)") from None


def _cache_of(request: GenerationRequest) -> str:
    """A request's cache as the form writes it: "" when it is just what its speed profile stands for."""
    if request.cache is None:
        return ""
    spec = model_spec(request.model)
    if spec is not None:
        from engine.core.speed import resolve_speed

        profile = resolve_speed(replace(request, cache=None, cache_threshold=None), spec.family)
        if (profile.cache, profile.cache_threshold) == (request.cache, request.cache_threshold):
            return ""
    return request.cache if request.cache_threshold is None else f"{request.cache}:{request.cache_threshold:g}"


def form_from_values(values: Sequence[Any], taxonomy: Taxonomy) -> FormValues:
    """Build a FormValues from handler arguments given in `form_keys()` order."""
    keys = form_keys(taxonomy)
    if len(values) != len(keys):
        raise InvalidRequest("form", f"expected {len(keys)} values, got {len(values)}")
    raw = dict(zip(keys, values))
    tags = {f.id: picked for f in taxonomy.fields if (picked := _tag_value(f, raw[f"tag:{f.id}"]))}
    random_seed = raw["random_seed"]
    return FormValues(
        model=str(raw["model"] or ""),
        narrative=str(raw["narrative"] or ""),
        negative_prompt=str(raw["negative_prompt"] or ""),
        tags=tags,
        random_seed=bool(random_seed) if random_seed is not None else True,
        seed=_whole("seed", raw["seed"]),
        width=_whole("width", raw["width"]),
        height=_whole("height", raw["height"]),
        num_frames=_whole("num_frames", raw["num_frames"]),
        fps=_whole("fps", raw["fps"]),
        steps=_whole("steps", raw["steps"]),
        guidance=_number("guidance", raw["guidance"]),
        quantization=str(raw["quantization"] or "none"),
        offload=str(raw["offload"] or "auto"),
        vae_tiling=str(raw["vae_tiling"] or "auto"),
        transformer_file=_transformer_file(raw["transformer_file"]),
        adapters=_adapters(raw),
        tag_encoder=_tag_encoder(raw["tag_encoder"]),
        tag_guidance=_number("tag_guidance", raw["tag_guidance"]),
        tags_in_prompt=bool(raw["tags_in_prompt"]) if raw["tags_in_prompt"] is not None else True,
        speed=str(raw["speed"] or "quality"),
        cache=_cache_text(raw["cache"]),
        compile_blocks=bool(raw["compile_blocks"]),
        attention=str(raw["attention"] or "auto"),
    )


def form_to_values(form: FormValues, taxonomy: Taxonomy) -> list[Any]:
    """Component values in `form_keys()` order (what a handler returns to fill the form)."""
    out: list[Any] = [getattr(form, key) for key in SCALAR_KEYS]
    for f in taxonomy.fields:
        picked = list(form.tags.get(f.id, ()))
        out.append(picked if f.multi else (picked[0] if picked else UNSET))
    slots = list(form.adapters) + [None] * (MAX_ADAPTERS - len(form.adapters))
    for ref in slots[:MAX_ADAPTERS]:
        out += [ref.path, ref.strength] if ref is not None else ["", DEFAULT_STRENGTH]
    return out + [form.tag_encoder, form.tag_guidance, form.tags_in_prompt]


# -- FormValues <-> GenerationRequest -------------------------------------------------------------
# Settings the form spells its own way (an "auto" word, "" for unset, a seed tick box, KIND:NUMBER).
_CONVERTED = ("tags", "seed", "vae_tiling", "transformer_file", "adapters", "tag_encoder", "tags_in_prompt", "cache",
              "cache_threshold", "compile_blocks")


def _plain_settings() -> tuple[str, ...]:
    """The declared settings the form holds as the request does: copied across by name."""
    held = {f.name for f in fields(FormValues)}
    return tuple(f.name for f, spec in declared(GenerationRequest)
                 if spec.form and f.name in held and f.name not in _CONVERTED)


def check_model_limits(form: FormValues) -> None:
    """The chosen model's frame and size rules for a preset's settings (the engine's own check)."""
    spec = model_spec(form.model)
    if spec is None:
        return
    d = spec.defaults
    frames, width, height = form.num_frames or d.num_frames, form.width or d.width, form.height or d.height
    for name, value in (("num_frames", frames), ("width", width), ("height", height)):
        check_number(name, value, whole=True, low=1)
    spec.family.check_shape(frames, width, height, spec.max_frames, spec.max_side)


def request_from_form(form: FormValues) -> GenerationRequest:
    """The request the form describes (its own type checks apply); the engine checks it against the model."""
    if form.vae_tiling not in VAE_TILING_CHOICES:
        raise InvalidRequest("vae_tiling", f"must be one of {', '.join(VAE_TILING_CHOICES)}, got {form.vae_tiling!r}")
    if not form.random_seed and form.seed is None:
        raise InvalidRequest("seed", "enter a seed, or tick Random")
    random_seed = form.random_seed or form.seed == -1  # -1 is the usual spelling of "random"
    cache, cache_threshold = _cache_parts(form.cache)
    return GenerationRequest(
        **{name: getattr(form, name) for name in _plain_settings()},
        tags=dict(form.tags),
        seed=None if random_seed else form.seed,
        vae_tiling={"auto": None, "on": True, "off": False}[form.vae_tiling],
        transformer_file=form.transformer_file or None,
        adapters=form.adapters,
        tag_encoder=form.tag_encoder or None,
        tags_in_prompt=form.tags_in_prompt,
        cache=cache,
        cache_threshold=cache_threshold,
        compile_blocks=True if form.compile_blocks else None,
    )


def form_from_request(request: GenerationRequest) -> FormValues:
    """Fill the form from a (usually resolved) request: "Reuse settings" of the history."""
    tiling = "auto" if request.vae_tiling is None else ("on" if request.vae_tiling else "off")
    if len(request.adapters) > MAX_ADAPTERS:  # e.g. a CLI run: refuse rather than drop some
        raise InvalidRequest("adapters", f"this entry uses {len(request.adapters)} adapters; the Create tab holds "
                                         f"at most {MAX_ADAPTERS} (re-run it with `python -m engine generate`)")
    return FormValues(
        **{name: getattr(request, name) for name in _plain_settings()},
        tags={k: tuple(v) for k, v in request.tags.items()},
        random_seed=request.seed is None,
        seed=request.seed,
        vae_tiling=tiling,
        transformer_file=request.transformer_file or "",
        adapters=tuple(AdapterRef(a.path, a.strength) for a in request.adapters),
        tag_encoder=request.tag_encoder or "",
        tags_in_prompt=request.tags_in_prompt if request.tags_in_prompt is not None else request.tag_encoder is None,
        cache=_cache_of(request),
        compile_blocks=bool(request.compile_blocks),
    )


# -- models ---------------------------------------------------------------------------------------
def model_spec(model: str) -> ModelSpec | None:
    """The spec of a registry id or local folder; None when the text names neither."""
    try:
        return resolve_model(model)
    except InvalidRequest:
        return None


def with_model_defaults(form: FormValues, model: str) -> FormValues:
    """Switch model and take its default size, frames, fps, steps and guidance."""
    spec = model_spec(model)
    if spec is None:
        return replace(form, model=model)
    d = spec.defaults
    return replace(form, model=model, width=d.width, height=d.height, num_frames=d.num_frames, fps=d.fps,
                   steps=d.steps, guidance=d.guidance)


def defaults_note(before: FormValues, after: FormValues) -> str:
    """What switching model changed in the form ("" when nothing), so the change is never silent."""
    changed = [f"{label} {new}" for label, old, new in (
        ("size", f"{before.width}×{before.height}", f"{after.width}×{after.height}"),
        ("frames", before.num_frames, after.num_frames), ("fps", before.fps, after.fps),
        ("steps", before.steps, after.steps), ("guidance", before.guidance, after.guidance)) if old != new]
    return f"The model's defaults were set: {', '.join(changed)}." if changed else ""


def registry_models() -> tuple[ModelSpec, ...]:
    return tuple(REGISTRY.values())


# -- presets --------------------------------------------------------------------------------------
def apply_preset(form: FormValues, preset: Preset) -> FormValues:
    """The form with a preset applied. Its tags replace all tags; settings it does not name keep
    their current values; an empty preset narrative keeps the user's (see Preset). The same merger
    as the CLI's and the API's, over the form's current values."""
    over = preset.to_request_overrides()
    if "model" in over and over["model"] != form.model:
        form = with_model_defaults(form, str(over["model"]))
    merged = merge_settings(preset=over)  # the form's own values are the base: replace() keeps the rest
    if "seed" in merged:  # a preset's seed is a fixed one
        merged.update(seed=int(merged["seed"]), random_seed=False)
    merged["tags"] = dict(merged["tags"])
    return replace(form, **merged)


SHAPE_KEYS = ("num_frames", "width", "height")


def fit_preset_to_model(form: FormValues, preset: Preset) -> tuple[FormValues, list[str]]:
    """A preset written for a real model may ask for more frames or pixels than the chosen model
    takes (the preview model stops at 33 frames, 256 px). Each such setting goes back to the
    model's default, and a line says which, so the form is never left in a state Generate refuses."""
    spec = model_spec(form.model)
    if spec is None:
        return form, []
    kept: list[str] = []
    for key in SHAPE_KEYS:
        if key not in preset.settings:
            continue
        try:
            only: dict[str, Any] = {k: (getattr(form, k) if k == key else None) for k in SHAPE_KEYS}
            check_model_limits(replace(form, **only))
        except InvalidRequest:
            default = getattr(spec.defaults, key)
            kept.append(f"{FIELD_LABELS.get(key, key)} {getattr(form, key)} → {default}")
            form = replace(form, **{key: default})
    return form, kept


def preset_from_form(form: FormValues, name: str, description: str = "") -> Preset:
    """A user preset holding the form's tags, narrative, negative prompt, model and settings.

    Unset settings stay unset (the model's default applies); the seed is kept only when fixed.
    Memory settings (the transformer file too), adapters and the tag encoder belong to a machine, not a
    look, so they are not stored.
    """
    check_model_limits(form)  # a preset the model cannot run is refused now, naming the field
    settings: dict[str, Any] = {"model": form.model}
    settings.update({k: getattr(form, k) for k in PRESET_NUMBER_KEYS if getattr(form, k) is not None})
    if not form.random_seed and form.seed is not None and form.seed != -1:
        settings["seed"] = form.seed
    return Preset.create(name, description=description or "", tags=dict(form.tags), narrative=form.narrative,
                         negative_prompt=form.negative_prompt, settings=settings)


def preset_snapshot(form: FormValues, preset: Preset) -> dict[str, Any]:
    """What the preset set, in form terms: later edits are compared against this."""
    keys = ["negative_prompt", "tags", *(["narrative"] if preset.narrative.strip() else [])]
    keys += ["random_seed" if k == "seed" else k for k in preset.settings]
    keys += ["seed"] if "seed" in preset.settings else []
    snap = {k: getattr(form, k) for k in keys}
    snap["tags"] = {k: tuple(v) for k, v in form.tags.items()}
    return snap


def is_modified(snapshot: Mapping[str, Any] | None, form: FormValues) -> bool:
    if not snapshot:
        return False
    for key, value in snapshot.items():
        current = getattr(form, key)
        if key == "tags":
            current = {k: tuple(v) for k, v in current.items()}
        if current != value:
            return True
    return False


def parse_id(value: Any) -> int | None:
    """A job or history entry number typed in a box ("12", "#12") or sent by an API client (12)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().lstrip("#").strip()
    if text.endswith(".0"):
        text = text[:-2]
    if not text.isdigit() or len(text) > 19:  # past SQLite's INTEGER: no such entry can exist
        return None
    return int(text) if int(text) > 0 else None


# -- messages -------------------------------------------------------------------------------------
def field_label(field_name: str, taxonomy: Taxonomy | None = None) -> str:
    """How the form names a request field: num_frames -> Frames, tags.camera.movement -> Camera · Movement."""
    if field_name.startswith("tags.") and taxonomy is not None:
        field_id = field_name[len("tags."):]
        if field_id in taxonomy.field_ids:
            f = taxonomy.field(field_id)
            return f"{taxonomy.axis(f.axis).label} · {f.label}"
    if field_name.startswith("settings."):
        field_name = field_name[len("settings."):]
    return FIELD_LABELS.get(field_name, field_name)


def ui_message(exc: BaseException, taxonomy: Taxonomy | None = None) -> str:
    """One readable line for a toast; InvalidRequest is labelled with the form's field name."""
    if isinstance(exc, InvalidRequest):  # every field refused at once, each by its label
        return "; ".join(f"{field_label(e.field, taxonomy)}: {e.reason}" for e in exc.problems())
    if isinstance(exc, ModelUnavailable) and exc.reason:
        # Worded for someone in a browser: the download command is run by whoever runs the studio.
        return (f"Model: the weights of '{exc.model}' are {exc.reason}. Whoever runs this studio can fetch them "
                f"on the server (python -m engine download {exc.model}) and restart it; meanwhile the preview "
                "model works (its clips are noise).")
    return str(exc) or type(exc).__name__
