"""Create tab: the adapter slots and the tag encoder: their choices, notes, misfits and listing events.

Adapters (HydraLoRA / LoRA) found by the studio's `AdapterCatalog` are offered per model in a few
slots with a strength each; beside them a saved PKS tag encoder (dual-channel conditioning) with its
own tag guidance and a switch for writing the tags into the prompt too. Both lists are filled on page
load and on model change (the scan may import torch, which building the page must not).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol, Sequence

import gradio as gr

from engine.core.errors import EngineError, InvalidRequest
from engine.core.requests import AdapterRef

from .. import adapters
from ..adapters import MAX_ADAPTERS, FormValues
from ..formatting import adapters_note, adapters_title
from ..services.context import (AdapterEntry, StudioServices, inspect_tag_encoder, shown_folder, tag_encoder_roots,
                                tag_encoders_for)


class ExtrasControls(Protocol):
    """What the listing events need of the Create tab (a Protocol: importing create here would be a cycle)."""

    model: gr.Dropdown
    adapter_paths: list[gr.Dropdown]
    adapter_rows: list[gr.Row]
    adapters_box: gr.Accordion
    adapters_note: gr.Markdown
    adapters_rescan: gr.Button
    tag_encoder: gr.Dropdown
    tag_guidance: gr.Number
    tags_in_prompt: gr.Checkbox
    tag_encoder_note: gr.Markdown
    tag_encoder_rescan: gr.Button


NO_ADAPTER: tuple[str, str] = ("None", "")
NO_TAG_ENCODER: tuple[str, str] = ("None", "")
TAG_ENCODER_NOTE = ("**Dual channel:** with a tag encoder the tags also go through it into the model's "
                    "cross-attention and every block's AdaLN modulation, besides (or instead of) the prompt text.")


def adapter_choices(entries: Sequence[AdapterEntry], model: str) -> list[tuple[str, str]]:
    return [NO_ADAPTER, *[(e.label(model), e.path) for e in entries]]


def adapter_list(services: StudioServices, model: str) -> list[Any]:
    """Values for [adapters_box, adapters_note, *adapter_paths]: the adapters that fit `model`."""
    catalog = services.adapter_catalog
    entries = catalog.for_model(model)
    note = adapters_note(len(entries), model, [shown_folder(services, r) for r in catalog.roots()],
                         len(catalog.problems))
    choices = adapter_choices(entries, model)
    return [gr.update(label=adapters_title(len(entries))), note,
            *[gr.update(choices=choices) for _ in range(MAX_ADAPTERS)]]


def tag_encoder_list(services: StudioServices, model: str) -> tuple[Any, str]:
    """Values for [tag_encoder, tag_encoder_note]: the saved tag encoders that fit `model`."""
    entries = tag_encoders_for(services.settings, model, services.studio.history)
    root = shown_folder(services, tag_encoder_roots(services.settings)[0])
    note = (f"{len(entries)} tag encoder{'s' if len(entries) != 1 else ''} fit{'s' if len(entries) == 1 else ''} "
            f"this model." if entries else f"No tag encoder fits this model; save one in `{root}` or train one.")
    return gr.update(choices=[NO_TAG_ENCODER, *[(e.label(), e.path) for e in entries]]), note


def tag_encoder_misfit(services: StudioServices, path: str, model: str) -> str | None:
    """Why the tag encoder at `path` cannot drive `model`, in one line (None when it fits)."""
    spec = adapters.model_spec(model)
    if spec is None:
        return None  # an unknown model is reported by the model check
    return inspect_tag_encoder(path, tag_encoder_roots(services.settings)).misfit(spec)


def tag_encoder_switches(encoder: str | None) -> tuple[Any, Any]:
    """Tag guidance and "tags in prompt" only mean something with an encoder: reset and lock them without."""
    if encoder and encoder != "None":
        return gr.update(interactive=True), gr.update(interactive=True)
    return gr.update(value=None, interactive=False), gr.update(value=True, interactive=False)


def adapter_misfit(services: StudioServices, ref: AdapterRef, model: str) -> str | None:
    """Why the adapter at `ref.path` cannot go on `model`, in one line (None when it fits)."""
    spec = adapters.model_spec(model)
    try:
        entry = services.adapter_catalog.inspect(ref.path)
    except EngineError as exc:
        return str(exc.reason) if isinstance(exc, InvalidRequest) else str(exc)
    if spec is None:
        return None  # an unknown model is reported by the model check
    why = entry.misfit(spec)
    return f"{entry.name} does not fit {spec.id}: {why}" if why else None


def slot_rows(*paths: Any) -> list[Any]:
    """Adapter slot i shows once slot i-1 is used (or when it holds an adapter itself)."""
    used = [bool(p and str(p).strip()) for p in paths]
    return [gr.update(visible=i == 0 or used[i] or used[i - 1]) for i in range(len(paths))]


def drop_misfits(services: StudioServices, form: FormValues) -> FormValues:
    """After a model switch: adapters and a tag encoder made for the old model come off, each said so."""
    kept: list[AdapterRef] = []
    for ref in form.adapters:
        why = adapter_misfit(services, ref, form.model)
        if why is None:
            kept.append(ref)
        else:
            gr.Warning(f"Adapter removed: {why}", title="Adapters")
    form = replace(form, adapters=tuple(kept))
    if form.tag_encoder:
        why = tag_encoder_misfit(services, form.tag_encoder, form.model)
        if why is not None:
            gr.Warning(f"Tag encoder removed: {why}", title="Tag encoder")
            form = replace(form, tag_encoder="", tag_guidance=None, tags_in_prompt=True)
    return form


def wire(tab: ExtrasControls, services: StudioServices) -> None:
    # Adapters: listed on page load and whenever the model changes (by hand, a preset or a reuse).
    listing = [tab.adapters_box, tab.adapters_note, *tab.adapter_paths]
    gr.on(None, lambda model: adapter_list(services, model), inputs=[tab.model], outputs=listing,
          show_progress="hidden", api_visibility="private", trigger_mode="always_last")
    tab.adapters_rescan.click(lambda model: adapter_list(services, model), inputs=tab.model, outputs=listing,
                              api_name="list_adapters", show_progress="hidden")
    # Tag encoders: the same, listed on load and model change; guidance and the switch follow the pick.
    tag_listing = [tab.tag_encoder, tab.tag_encoder_note]
    gr.on(None, lambda model: tag_encoder_list(services, model), inputs=[tab.model], outputs=tag_listing,
          show_progress="hidden", api_visibility="private", trigger_mode="always_last")
    tab.tag_encoder_rescan.click(lambda model: tag_encoder_list(services, model), inputs=tab.model,
                                 outputs=tag_listing, api_name="list_tag_encoders", show_progress="hidden")
    tab.tag_encoder.change(tag_encoder_switches, inputs=tab.tag_encoder,
                           outputs=[tab.tag_guidance, tab.tags_in_prompt], show_progress="hidden",
                           api_visibility="private", queue=False)
    # Picked by hand (not filled by Reuse, which keeps the clip's own choice): the engine's default with
    # an encoder, tags off the text prompt (the dual channel); the switch stays.
    tab.tag_encoder.input(lambda encoder: gr.update(value=not (encoder and encoder != "None")),
                          inputs=tab.tag_encoder, outputs=tab.tags_in_prompt, show_progress="hidden",
                          api_visibility="private", queue=False)
    gr.on([p.change for p in tab.adapter_paths], slot_rows, inputs=tab.adapter_paths, outputs=tab.adapter_rows,
          show_progress="hidden", api_visibility="private", queue=False)
