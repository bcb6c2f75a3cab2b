"""Create tab: PKS tags, narrative, preset, model and settings; Generate, Cancel, progress, clip.

Every tag dropdown is generated from the taxonomy (field description as `info`, each value's
description in its choice label), so a taxonomy edit needs no UI change. "Save as preset" stores
the form as a user preset. Preset edits made anywhere (here or in the Presets tab) write a new
token into `presets_changed`, and every list of presets refreshes from it.

Parts live beside this module: `create_run` (Generate, the run on the "gpu" slot, Cancel),
`create_extras` (adapter slots and the tag encoder), `create_memory` ("Memory and speed", with
the transformer file).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import gradio as gr

from engine.core.errors import EngineError, InvalidRequest
from engine.core.pks import TagField
from engine.core.presets import PresetLibrary, slugify
from engine.core.registry import ModelSpec
from engine.core.requests import GenerationRequest

from .. import adapters
from ..adapters import MAX_ADAPTERS, FormValues, form_from_values, form_to_values, ui_message
from ..feedback import from_api, refuse, refusals
from ..formatting import ADAPTER_MERGE_NOTE, NOISE_NOTE, adapters_title, contradiction_text, is_preview, plain
from ..services.context import StudioServices
from . import best_of_n as best_of_n_box
from . import create_api, create_extras, create_memory, create_preview, create_recent, create_run
from . import queue as queue_panel
from .create_extras import NO_ADAPTER, NO_TAG_ENCODER, TAG_ENCODER_NOTE

NUMBER_KEYS: tuple[str, ...] = ("width", "height", "num_frames", "fps", "steps", "guidance")
NUMBER_LABELS = {"width": "Width", "height": "Height", "num_frames": "Frames", "fps": "FPS", "steps": "Steps",
                 "guidance": "Guidance"}


@dataclass
class CreateTab:
    preset: gr.Dropdown
    preset_badge: gr.Markdown  # the preset's name, "modified" once edited, and its description
    preset_snapshot: gr.State
    narrative: gr.Textbox
    negative_prompt: gr.Textbox
    tags: dict[str, gr.Dropdown]  # taxonomy field order
    compiled_prompt: gr.Textbox
    tag_warning: gr.Markdown
    model: gr.Dropdown
    model_note: gr.Markdown
    random_seed: gr.Checkbox
    seed: gr.Number
    reuse_seed: gr.Button
    numbers: dict[str, gr.Number]  # NUMBER_KEYS
    memory: create_memory.MemoryBox  # quantization, offload, VAE tiling, transformer file, Free memory
    generate: gr.Button
    cancel: gr.Button
    job_id: gr.Number
    session_jobs: gr.State
    last_seed: gr.State
    status: gr.Markdown
    video: gr.Video
    noise_note: gr.Markdown
    clip_settings: gr.Markdown
    queue: queue_panel.QueuePanel
    adapter_paths: list[gr.Dropdown]  # MAX_ADAPTERS slots
    adapter_strengths: list[gr.Slider]
    adapter_rows: list[gr.Row]
    adapters_box: gr.Accordion
    adapters_note: gr.Markdown
    adapters_rescan: gr.Button
    save_name: gr.Textbox
    save_description: gr.Textbox
    save_preset: gr.Button
    presets_changed: gr.State  # {"at": ns, "renamed": {old slug: new slug}}: written by every preset edit
    tag_encoder: gr.Dropdown  # a saved tag encoder ("" for none)
    tag_guidance: gr.Number
    tags_in_prompt: gr.Checkbox
    tag_encoder_note: gr.Markdown
    tag_encoder_rescan: gr.Button
    best_of_n: best_of_n_box.BestOfNPanel | None = None  # the "Best of N" box under Generate
    recent: create_recent.RecentStrip | None = None  # the latest clips under the form
    api: dict[str, Any] | None = None  # the hidden components of the one-call `/generate` endpoint
    anyway: gr.Checkbox | None = None  # "Generate anyway": shown only for a soft contradiction
    live_preview: create_preview.LivePreviewBox | None = None  # the running job's clip forming, under the status

    def inputs(self) -> list[Any]:
        """The form's components in `adapters.form_keys()` order."""
        scalar = {"model": self.model, "narrative": self.narrative, "negative_prompt": self.negative_prompt,
                  "random_seed": self.random_seed, "seed": self.seed, **create_memory.inputs(self.memory),
                  **self.numbers}
        slots = [c for pair in zip(self.adapter_paths, self.adapter_strengths) for c in pair]
        return ([scalar[k] for k in adapters.SCALAR_KEYS] + list(self.tags.values()) + slots
                + [self.tag_encoder, self.tag_guidance, self.tags_in_prompt])

    def fill_outputs(self) -> list[Any]:
        """What `fill_values` returns values for: the form plus the model-dependent notes."""
        return self.inputs() + [self.model_note, self.noise_note]


# -- choices and notes ------------------------------------------------------------------------------
def tag_choices(f: TagField) -> list[tuple[str, str]]:
    """Each value's description in its label, so it is read while choosing."""
    choices = [(f"{v.label} — {v.description.rstrip('.')}", v.id) for v in f.values]
    return choices if f.multi else [("Not set", adapters.UNSET), *choices]


def model_choices(services: StudioServices) -> list[tuple[str, str]]:
    out = []
    for spec in adapters.registry_models():
        missing = "" if services.availability.get(spec.id, True) else " · weights not downloaded"
        out.append((f"{spec.label} — {spec.vram_note}{missing}", spec.id))
    return out


def model_note(services: StudioServices, model: str) -> str:
    spec = adapters.model_spec(model)
    if spec is None:
        return f"**Unknown model** `{model}`: pick one from the list or give a local diffusers folder."
    here = services.availability.get(spec.id, spec.local_path is not None and spec.local_path.is_dir())
    weights = ("weights on this machine" if here else
               f"weights not on this machine — whoever runs the studio can fetch them with "
               f"`python -m engine download {spec.id}`")
    return f"**VRAM:** {spec.vram_note} · {weights}"


def number_props(spec: ModelSpec | None) -> dict[str, dict[str, Any]]:
    """info text and arrow step of each setting box for a model (limits shown, not enforced here)."""
    if spec is None:
        return {k: {"info": "model default when empty"} for k in NUMBER_KEYS}
    d, fam = spec.defaults, spec.family
    side = f"{fam.side_multiple}–{spec.max_side} px, a multiple of {fam.side_multiple}"
    return {
        "width": {"info": f"{side} · default {d.width}", "step": fam.side_multiple},
        "height": {"info": f"{side} · default {d.height}", "step": fam.side_multiple},
        "num_frames": {"info": f"{fam.frame_stride}k+1, up to {spec.max_frames} · default {d.num_frames}",
                       "step": fam.frame_stride},
        "fps": {"info": f"1–60 · default {d.fps}", "step": 1},
        "steps": {"info": f"1–200 · default {d.steps}", "step": 1},
        "guidance": {"info": f"0–30 · default {d.guidance:g}", "step": 0.5},
    }


def fill_values(services: StudioServices, form: FormValues) -> list[Any]:
    """Values for `CreateTab.fill_outputs()`: the form, its model's limits, and the notes."""
    values = form_to_values(form, services.taxonomy)
    props = number_props(adapters.model_spec(form.model))
    for i, key in enumerate(adapters.SCALAR_KEYS):
        if key in props:
            values[i] = gr.update(value=values[i], **props[key])
    values[-2:] = [gr.update(value=v, interactive=bool(form.tag_encoder)) for v in values[-2:]]
    return values + [model_note(services, form.model), gr.update(visible=is_preview(form.model))]


def default_form(services: StudioServices) -> FormValues:
    return adapters.with_model_defaults(FormValues(model=services.default_model), services.default_model)


# -- presets, shared with the Presets tab --------------------------------------------------------------
def preset_label(library: PresetLibrary, slug: str) -> tuple[str, str]:
    """(name, description) of one of the user's presets; the slug itself when it no longer exists.
    Read each time, not cached: in an owned studio two users may each have a preset of that slug."""
    try:
        preset = library.get(slug)
    except EngineError:
        return slug, ""
    return preset.name, preset.description


def badge_text(library: PresetLibrary, slug: str | None, modified: bool) -> str:
    if not slug:
        return ""
    name, description = preset_label(library, slug)
    # A preset may come from an imported file: its words are shown as text, nothing loads from them.
    head = f"Preset **{plain(name)}**" + (" · `modified`" if modified else "")
    return f"{head}<br><small>{plain(description)}</small>" if description else head


def preset_fill(services: StudioServices, library: PresetLibrary, slug: str | None,
                values: Sequence[Any]) -> list[Any]:
    """Values for [*fill_outputs(), preset_snapshot, preset_badge]: the form with preset `slug` of
    `library` (the user's, `StudioServices.library_for`) applied.

    The Create dropdown and the Presets tab's "Use in Create" both come here.
    """
    tax = services.taxonomy
    form = read_form(services, values)
    if not slug:
        return fill_values(services, form) + [None, ""]
    try:
        preset = library.get(slug)
        applied, adjusted = adapters.fit_preset_to_model(adapters.apply_preset(form, preset), preset)
    except EngineError as exc:
        refuse(ui_message(exc, tax), "Preset")
    if adjusted:
        gr.Info(f"{preset.name} asks for more than this model takes; kept the model's "
                f"{', '.join(adjusted)}.", duration=6)
    snapshot = adapters.preset_snapshot(applied, preset)
    return fill_values(services, applied) + [snapshot, badge_text(library, slug, False)]


def read_form(services: StudioServices, values: Sequence[Any]) -> FormValues:
    try:
        return form_from_values(values, services.taxonomy)
    except InvalidRequest as exc:
        refuse(ui_message(exc, services.taxonomy), "Check the form")


def presets_changed(renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """A new value for `CreateTab.presets_changed` (always different, so its change event fires)."""
    return {"at": time.time_ns(), "renamed": dict(renamed or {})}


# -- build ------------------------------------------------------------------------------------------
def build(services: StudioServices) -> CreateTab:
    tax = services.taxonomy
    form = default_form(services)
    props = number_props(adapters.model_spec(form.model))
    with gr.Row(elem_id="create-row"):
        with gr.Column(scale=3, min_width=340):
            preset = gr.Dropdown(preset_choices(services.page_presets()), value="", label="Preset", elem_id="preset",
                                 info="fills narrative, negative prompt, tags and settings")
            preset_badge = gr.Markdown("", elem_id="preset-badge")
            narrative = gr.Textbox(label="Narrative", lines=3, max_lines=8, elem_id="narrative",
                                   placeholder="What happens in the clip, in words: who, where, what they do.")
            negative = gr.Textbox(label="Negative prompt", lines=1, max_lines=4, elem_id="negative",
                                  placeholder="what to avoid (optional)")
            tags: dict[str, gr.Dropdown] = {}
            with gr.Tabs(elem_id="axes"):
                for axis in tax.axes:
                    # render_children: a hidden axis must still hold the values a preset or reuse sets.
                    with gr.Tab(axis.label, id=f"axis-{axis.id}", render_children=True):
                        gr.Markdown(axis.description, elem_classes=["muted"])
                        with gr.Row(elem_classes=["tag-grid"]):
                            for f in axis.fields:
                                tags[f.id] = gr.Dropdown(
                                    tag_choices(f), value=[] if f.multi else adapters.UNSET, multiselect=f.multi,
                                    label=f.label + (" (several)" if f.multi else ""), info=f.description,
                                    min_width=200, elem_id=f"tag-{f.id.replace('.', '-')}",
                                )
            tags = {f.id: tags[f.id] for f in tax.fields}  # taxonomy order, whatever the layout
            compiled = gr.Textbox(label="Compiled prompt", lines=2, max_lines=6, interactive=False,
                                  info="what the model's text encoder reads: tag phrases, then the narrative",
                                  placeholder="pick tags and write a narrative", elem_id="compiled-prompt",
                                  buttons=["copy"])
            tag_warning = gr.Markdown("", elem_classes=["warning"], elem_id="tag-warning")
            anyway = gr.Checkbox(False, label="Generate anyway", visible=False, elem_id="generate-anyway",
                                 info="these tags are an unusual pair: make the clip regardless")
            recent = create_recent.build()
            with gr.Accordion("Save as preset", open=False, elem_id="save-preset-box"):
                with gr.Row(equal_height=True):
                    save_name = gr.Textbox(label="Preset name", max_lines=1, min_width=180, scale=2,
                                           placeholder="e.g. Rooftop chase at dusk", elem_id="save-preset-name")
                    save_description = gr.Textbox(label="Description", max_lines=2, min_width=200, scale=3,
                                                  placeholder="one line for the Presets tab (optional)",
                                                  elem_id="save-preset-description")
                gr.Markdown("Saves the tags, narrative, negative prompt, model and settings (the seed only when "
                            "fixed). Saving under the name of the preset you started from updates it.",
                            elem_classes=["muted"])
                save_preset = gr.Button("Save preset", size="sm", variant="primary", elem_id="save-preset")
            panel = queue_panel.build(services)
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(model_choices(services), value=form.model, label="Model", allow_custom_value=True,
                                info="or type the path of a local diffusers folder", elem_id="model")
            note = gr.Markdown(model_note(services, form.model), elem_classes=["muted"], elem_id="model-note")
            with gr.Row(elem_id="seed-row"):
                random_seed = gr.Checkbox(True, label="Random seed", min_width=120, elem_id="random-seed")
                seed = gr.Number(None, label="Seed", precision=0, visible=False, min_width=140, elem_id="seed",
                                 info="-1 also means random")
                reuse_seed = gr.Button("Reuse last seed", size="sm", min_width=120, scale=0, elem_id="reuse-seed")
            numbers: dict[str, gr.Number] = {}
            labels = NUMBER_LABELS
            # Three to a row: the common settings stay in view beside the form at 1280 px.
            for pair in (("width", "height", "num_frames"), ("fps", "steps", "guidance")):
                with gr.Row():
                    for key in pair:
                        numbers[key] = gr.Number(getattr(form, key), label=labels[key],
                                                 precision=None if key == "guidance" else 0, min_width=130,
                                                 elem_id=f"num-{key}", **props[key])
            # Generate right under the common settings: in the first 1280x800 screen; the folded
            # extras (adapters, tag encoder, memory) follow.
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="generate", min_width=120)
                cancel = gr.Button("Cancel", variant="stop", elem_id="cancel", min_width=100)
            with gr.Accordion(adapters_title(0), open=False, elem_id="adapters") as adapters_box:
                # Choices are filled on page load and on model change: the scan may import torch,
                # which building the page must not.
                adapters_note_md = gr.Markdown("Looking for adapters…", elem_classes=["muted"],
                                               elem_id="adapters-note")
                paths: list[gr.Dropdown] = []
                strengths: list[gr.Slider] = []
                rows: list[gr.Row] = []
                for i in range(1, MAX_ADAPTERS + 1):
                    with gr.Row(visible=i == 1, equal_height=True, elem_id=f"adapter-row-{i}") as row:
                        paths.append(gr.Dropdown(
                            [NO_ADAPTER], value="", label=f"Adapter {i}", allow_custom_value=True, scale=3,
                            min_width=200, elem_id=f"adapter-{i}", info="or type the path of an adapter"
                            if i == 1 else None))
                        strengths.append(gr.Slider(-2, 2, value=adapters.DEFAULT_STRENGTH, step=0.05,
                                                   label="Strength", scale=2, min_width=150,
                                                   elem_id=f"adapter-strength-{i}"))
                    rows.append(row)
                gr.Markdown(ADAPTER_MERGE_NOTE, elem_classes=["muted"], elem_id="adapters-merge-note")
                rescan = gr.Button("Rescan adapter folders", size="sm", elem_id="adapters-rescan")
            with gr.Accordion("Tag encoder", open=bool(form.tag_encoder), elem_id="tag-encoder-box"):
                tag_encoder = gr.Dropdown([NO_TAG_ENCODER], value=form.tag_encoder, label="Tag encoder",
                                          allow_custom_value=True, elem_id="tag-encoder",
                                          info="a saved PKS tag encoder, or type the path of its folder")
                with gr.Row(equal_height=True):
                    tag_guidance = gr.Number(form.tag_guidance, label="Tag guidance", minimum=0, maximum=30, step=0.5,
                                             info="0–30; empty: plain CFG over text and tags", min_width=140,
                                             interactive=bool(form.tag_encoder), elem_id="tag-guidance")
                    tags_in_prompt = gr.Checkbox(form.tags_in_prompt, label="Also write tags into the prompt",
                                                 interactive=bool(form.tag_encoder), min_width=160,
                                                 elem_id="tags-in-prompt")
                gr.Markdown(TAG_ENCODER_NOTE, elem_classes=["muted"], elem_id="tag-encoder-dual-note")
                tag_encoder_note = gr.Markdown("Looking for tag encoders…", elem_classes=["muted"],
                                               elem_id="tag-encoder-note")
                tag_rescan = gr.Button("Rescan tag encoders", size="sm", elem_id="tag-encoder-rescan")
            memory = create_memory.build(form)
            best_of_n = best_of_n_box.build(services)
            job_id = gr.Number(None, visible=False, precision=0, label="job id")
            status = gr.Markdown("", elem_id="run-status")
            live = create_preview.build()
            noise_note = gr.Markdown(NOISE_NOTE, visible=is_preview(form.model), elem_classes=["noise-note"],
                                     elem_id="noise-note")
            video = gr.Video(label="Clip", interactive=False, autoplay=True, loop=True, buttons=["download"],
                             height=300, elem_id="clip")
            with gr.Accordion("Clip settings", open=True):
                clip_settings = gr.Markdown("", elem_id="clip-settings", elem_classes=["settings-table"])
    best_of_n_box.build_results(best_of_n)
    api = create_api.build()
    return CreateTab(
        preset, preset_badge, gr.State(None), narrative, negative, tags, compiled, tag_warning, model,
        note, random_seed, seed, reuse_seed, numbers, memory, generate,
        cancel, job_id, gr.State([]), gr.State(None), status, video, noise_note, clip_settings, panel,
        paths, strengths, rows, adapters_box, adapters_note_md, rescan, save_name, save_description, save_preset,
        gr.State({"at": 0, "renamed": {}}), tag_encoder=tag_encoder, tag_guidance=tag_guidance,
        tags_in_prompt=tags_in_prompt, tag_encoder_note=tag_encoder_note, tag_encoder_rescan=tag_rescan,
        best_of_n=best_of_n, recent=recent, api=api, anyway=anyway, live_preview=live,
    )


# -- wire -------------------------------------------------------------------------------------------
def wire(tab: CreateTab, services: StudioServices) -> None:
    tax = services.taxonomy

    def read(values: Sequence[Any]) -> FormValues:
        return read_form(services, values)

    def on_form_change(snapshot: dict[str, Any] | None, slug: str | None, request: gr.Request,
                       *values: Any) -> tuple[Any, str, Any, Any]:
        try:
            form = form_from_values(values, tax)
        except InvalidRequest as exc:
            return gr.skip(), f"⚠ {ui_message(exc, tax)}", gr.skip(), gr.skip()
        found = tax.find_contradictions(form.tags)
        warnings = [contradiction_text(c, tax) for c in found]
        # Only soft pairs can be made anyway; a hard one hides the box and clears it.
        soft_only = bool(found) and all(c.soft for c in found)
        anyway = gr.update(visible=True) if soft_only else gr.update(visible=False, value=False)
        try:
            # Tags off the prompt (they then reach the model through the tag encoder only): narrative only.
            prompt = tax.compile_prompt(form.narrative, form.tags if form.tags_in_prompt else {})
        except InvalidRequest as exc:
            prompt = gr.skip()  # the last prompt that compiled stays readable while the tags are fixed
            warnings = warnings or [f"⚠ {ui_message(exc, tax)}"]
        try:
            badge = badge_text(services.library_for(request), slug, adapters.is_modified(snapshot, form))
        except EngineError:  # a rater: the Create tab is not theirs
            badge = ""
        return prompt, "\n\n".join(warnings), badge, anyway

    fill_count = len(tab.fill_outputs())

    @refusals("Preset", outputs=fill_count + 2, taxonomy=tax)
    def on_preset(slug: str | None, request: gr.Request, *values: Any) -> list[Any]:
        return preset_fill(services, services.library_for(request), slug, values)

    @refusals("Model", outputs=fill_count, taxonomy=tax)
    def on_model(*values: Any) -> list[Any]:
        form = create_extras.drop_misfits(services, read(values))
        switched = adapters.with_model_defaults(form, form.model)
        if note := adapters.defaults_note(form, switched):
            gr.Info(note, title="Model")
        return fill_values(services, switched)

    def validated(values: Sequence[Any]) -> GenerationRequest:
        """The form as a request (Generate and Best of N): a value of the wrong type -> a toast naming the
        field. Everything else is checked once, by the engine, when the job is submitted."""
        form = read(values)
        if not from_api():  # the page always fills these boxes: an empty one was emptied by hand
            props = number_props(adapters.model_spec(form.model))
            for key in NUMBER_KEYS:
                if getattr(form, key) is None:
                    refuse(f"{NUMBER_LABELS[key]}: must not be empty ({props[key]['info']})", "Cannot generate")
        try:
            return adapters.request_from_form(form)
        except EngineError as exc:
            refuse(ui_message(exc, tax), "Cannot generate")

    @refusals("Save as preset", outputs=4, taxonomy=tax)
    def save_as_preset(name: str | None, description: str | None, current: str | None, request: gr.Request,
                       *values: Any) -> tuple[Any, Any, str, dict[str, Any]]:
        form = read(values)
        presets = services.library_for(request)
        preset = adapters.preset_from_form(form, name or "", description or "")
        # Saving under the name of the user preset the form started from updates it; any
        # other existing name is refused, so a click never overwrites another preset.
        current = current or ""
        update = (bool(current) and preset.slug == current and presets.exists(current)
                  and not presets.get(current).builtin)
        if not update and presets.exists(preset.slug) and not presets.get(preset.slug).builtin:
            raise InvalidRequest("name", f"'{preset.name}' is already one of your presets; choose another "
                                         "name, or pick that preset first to update it")
        if update and not (description or "").strip():  # an empty box keeps the description it had
            preset = replace(preset, description=presets.get(current).description)
        saved = presets.save(preset, overwrite=update)
        gr.Info(f"Preset '{saved.name}' {'updated' if update else 'saved'}.")
        return (gr.update(choices=preset_choices(presets), value=saved.slug), adapters.preset_snapshot(form, saved),
                badge_text(presets, saved.slug, False), presets_changed())

    @refusals("Presets", outputs=3, taxonomy=tax)
    def refresh_preset_list(change: dict[str, Any] | None, current: str | None, save_name: str | None,
                            request: gr.Request) -> tuple[Any, Any, Any, Any]:
        presets = services.library_for(request)
        renamed = (change or {}).get("renamed", {})
        slug = renamed.get(current, current) if current else current
        # "Save as preset" follows a rename of the preset its name box names, so a save updates it.
        old = next((o for o in renamed if _slug_of(save_name) == o), None)
        name = presets.get(renamed[old]).name if old is not None and presets.exists(renamed[old]) else gr.skip()
        if not slug or not presets.exists(slug):
            cleared = (gr.skip(), gr.skip()) if not current else (None, "")
            return (gr.update(choices=preset_choices(presets), value=""), *cleared, name)
        moved = slug != current
        return (gr.update(choices=preset_choices(presets), value=slug), gr.skip(),
                badge_text(presets, slug, False) if moved else gr.skip(), name)

    inputs = tab.inputs()
    triggers: list[Any] = [c.change for c in inputs] + [tab.preset_snapshot.change]
    gr.on(triggers, on_form_change, inputs=[tab.preset_snapshot, tab.preset, *inputs],
          outputs=[tab.compiled_prompt, tab.tag_warning, tab.preset_badge, tab.anyway], trigger_mode="always_last",
          show_progress="hidden", api_visibility="private", queue=False)
    tab.preset.input(on_preset, inputs=[tab.preset, *inputs],
                     outputs=[*tab.fill_outputs(), tab.preset_snapshot, tab.preset_badge],
                     api_name="apply_preset", show_progress="hidden")
    tab.model.input(on_model, inputs=inputs, outputs=tab.fill_outputs(), show_progress="hidden",
                    api_visibility="private")
    tab.random_seed.change(lambda r: gr.update(visible=not r), inputs=tab.random_seed, outputs=tab.seed,
                           show_progress="hidden", api_visibility="private")
    ran = create_run.wire(tab, services, inputs, validated)
    if tab.live_preview is not None:
        create_preview.wire(tab.live_preview, services, tab.generate, tab.session_jobs, ran)
    if tab.api is not None:
        create_api.wire(tab.api, services)
    if tab.recent is not None:
        create_recent.wire(tab.recent, services, player=[tab.video, tab.clip_settings, tab.noise_note, tab.status],
                           fill_outputs=tab.fill_outputs(), fill=lambda form: fill_values(services, form),
                           refresh_after=[ran])
    create_memory.wire(tab.memory, services)
    if tab.best_of_n is not None:
        best_of_n_box.wire(tab.best_of_n, tab, services, validate=validated)

    tab.save_preset.click(save_as_preset, inputs=[tab.save_name, tab.save_description, tab.preset, *inputs],
                          outputs=[tab.preset, tab.preset_snapshot, tab.preset_badge, tab.presets_changed],
                          api_name="save_preset", show_progress="hidden")
    tab.presets_changed.change(refresh_preset_list, inputs=[tab.presets_changed, tab.preset, tab.save_name],
                               outputs=[tab.preset, tab.preset_snapshot, tab.preset_badge, tab.save_name],
                               show_progress="hidden", api_visibility="private")
    create_extras.wire(tab, services)


def _slug_of(name: str | None) -> str | None:
    try:
        return slugify(name) if name and name.strip() else None
    except InvalidRequest:  # not a name a preset could have
        return None


def preset_choices(library: PresetLibrary) -> list[tuple[str, str]]:
    """Built-ins, then the user's presets (re-read on each page load, so new files show up)."""
    return [("No preset", ""), *[(p.name + ("" if p.builtin else " (yours)"), p.slug) for p in library.list()]]


def fill_from(services: StudioServices, form: FormValues) -> list[Any]:
    """Public helper for other tabs ("Reuse settings"): values for `CreateTab.fill_outputs()`."""
    return fill_values(services, form)


def use_model(services: StudioServices, model: str) -> Callable[..., list[Any]]:
    """A handler that switches the form to `model` with its defaults (the offline banner's button)."""
    @refusals("Check the form", outputs=len(adapters.form_keys(services.taxonomy)) + 2, taxonomy=services.taxonomy)
    def handler(*values: Any) -> list[Any]:
        form = form_from_values(values, services.taxonomy)
        return fill_values(services, adapters.with_model_defaults(replace(form, model=model), model))
    return handler
