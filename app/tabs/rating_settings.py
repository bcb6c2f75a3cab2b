"""The Rate tab's admin panel: "Rating settings", the same settings as `python -m engine rating config`.

Saving writes `<data dir>/rating.json` (only what differs from the defaults is kept) and the Rate tab
serves by the new settings at once. A bad value is a toast naming the box; nothing is written and the
service keeps the settings it had.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import gradio as gr

from engine.core.errors import InvalidRequest
from engine.rating.settings_file import EDITABLE, SETTINGS_FILE, save_rating_settings
from engine.rating.types import RatingConfig

from ..services.context import StudioServices

LABELS = {
    "prefer_uncertain": "Uncertainty first (reward key)", "gold_share": "Gold share", "repeat_share": "Repeat share",
    "repeat_min_gap": "Pairs between repeats", "require_scores": "Require 1-5 scores",
    "fast_median_s": "Too fast below (s)",
}
SHOWN = tuple(LABELS)  # playback_fps stays on the command line: it changes files already served


@dataclass
class SettingsPanel:
    boxes: dict[str, Any]
    save: gr.Button
    note: gr.Markdown

    def inputs(self) -> list[Any]:
        return [self.boxes[k] for k in SHOWN]


def values(config: RatingConfig) -> list[Any]:
    return [config.prefer_uncertain or "" if k == "prefer_uncertain" else getattr(config, k) for k in SHOWN]


def build(config: RatingConfig) -> SettingsPanel:
    with gr.Accordion("Rating settings", open=False, elem_id="rate-admin-settings"):
        current = dict(zip(SHOWN, values(config)))
        with gr.Row():
            boxes: dict[str, Any] = {
                "gold_share": gr.Number(current["gold_share"], label=LABELS["gold_share"], minimum=0, maximum=1,
                                        step=0.05, min_width=140, info="0–1: hidden gold pairs",
                                        elem_id="rate-settings-gold_share"),
                "repeat_share": gr.Number(current["repeat_share"], label=LABELS["repeat_share"], minimum=0,
                                          maximum=1, step=0.05, min_width=140, info="0–1: hidden repeats",
                                          elem_id="rate-settings-repeat_share"),
                "repeat_min_gap": gr.Number(current["repeat_min_gap"], label=LABELS["repeat_min_gap"], precision=0,
                                            minimum=0, min_width=140, info="0–10000",
                                            elem_id="rate-settings-repeat_min_gap"),
                "fast_median_s": gr.Number(current["fast_median_s"], label=LABELS["fast_median_s"], minimum=0,
                                           maximum=3600, min_width=140, info="0–3600: flags a rater's median",
                                           elem_id="rate-settings-fast_median_s"),
            }
        with gr.Row():
            boxes["prefer_uncertain"] = gr.Textbox(current["prefer_uncertain"], label=LABELS["prefer_uncertain"],
                                                   max_lines=1, min_width=200, scale=2,
                                                   info="the key `reward score` printed; empty: off",
                                                   elem_id="rate-settings-prefer_uncertain")
            boxes["require_scores"] = gr.Checkbox(current["require_scores"], label=LABELS["require_scores"],
                                                  min_width=160, elem_id="rate-settings-require_scores")
            save = gr.Button("Save settings", variant="primary", size="sm", scale=0, min_width=140,
                             elem_id="rate-settings-save")
        note = gr.Markdown("", elem_classes=["muted"], elem_id="rate-settings-note")
    return SettingsPanel(boxes, save, note)


def _changes(raw: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The boxes as settings; an emptied number box is refused with what it takes."""
    changes: dict[str, Any] = {}
    for key in ("gold_share", "repeat_share", "repeat_min_gap", "fast_median_s"):
        value = raw[key]
        if value is None or value == "":
            raise InvalidRequest(key, "must not be empty")
        changes[key] = int(value) if key == "repeat_min_gap" and float(value).is_integer() else value
    changes["require_scores"] = bool(raw["require_scores"])
    prefer = (raw["prefer_uncertain"] or "").strip()
    if prefer:
        changes["prefer_uncertain"] = prefer
    return changes, () if prefer else ("prefer_uncertain",)


def wire(panel: SettingsPanel, services: StudioServices, act: Callable[..., Any], session: gr.State) -> None:
    """`act` runs a handler as the signed-in admin and turns refusals into toasts (rating_admin.wire)."""
    service = services.rating

    def save(admin: Any, *boxes: Any) -> list[Any]:
        try:
            changes, reset = _changes(dict(zip(SHOWN, boxes)))
            candidate = replace(service.config, **changes, **{k: None for k in reset})  # checks every value
        except InvalidRequest as exc:
            raise InvalidRequest(LABELS.get(exc.field, exc.field), exc.reason) from None
        previous = service.config
        service.reconfigure(admin, candidate)  # an admin only (refused otherwise, before any write)
        try:
            save_rating_settings(services.settings.data_dir, changes, reset=reset)
        except Exception:
            service.reconfigure(admin, previous)  # nothing half-applied: the file and the service agree
            raise
        gr.Info("Rating settings saved; the next pair served follows them.", title="Rating settings")
        path = services.settings.data_dir / SETTINGS_FILE
        return [*values(candidate), f"Saved in `{path}` ({', '.join(sorted(set(EDITABLE) & set(changes)))})."]

    panel.save.click(act(save, outputs=len(SHOWN) + 1), inputs=[session, *panel.inputs()],
                     outputs=[*panel.inputs(), panel.note], api_name="rating_settings")
