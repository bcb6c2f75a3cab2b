"""Create tab: the strip of this viewer's latest clips, newest first, under the form.

Clicking a thumbnail plays the clip in the Create player with its settings; "Reuse settings"
then fills the form with them. The strip is read from the history on page load and after every
run, so clips made in another tab or by the CLI on the same data folder show up too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.storage.clips import GenerationRecord

from ..adapters import form_from_request, parse_id
from ..feedback import refuse, refusals
from ..formatting import caption, is_preview, settings_markdown
from ..services.context import StudioServices
from ..services.identity import require_creator

RECENT = 8


@dataclass
class RecentStrip:
    gallery: gr.Gallery
    ids: gr.State  # the history ids shown, in gallery order
    picked: gr.State  # the id last clicked (None: nothing picked yet)
    reuse: gr.Button


def build() -> RecentStrip:
    gallery = gr.Gallery(label="Recent results · newest first · click one to play it", columns=5, rows=1,
                         height=130, allow_preview=False, object_fit="cover", buttons=[], interactive=False,
                         elem_id="recent-gallery")
    reuse = gr.Button("Reuse its settings", size="sm", interactive=False, elem_id="recent-reuse")
    return RecentStrip(gallery, gr.State([]), gr.State(None), reuse)


def listing(services: StudioServices, request: Any) -> tuple[list[tuple[Any, str]], list[int]]:
    """This viewer's latest finished clips as (poster, caption) and their ids."""
    history = services.studio.history
    owners = services.access.owners_filter(require_creator(services, request))
    records = history.list(status="done", owners=owners, limit=RECENT).items
    items: list[tuple[Any, str]] = []
    ids: list[int] = []
    for record in records:
        poster = history.poster_path(record)
        if poster is not None and poster.is_file():
            items.append((str(poster), caption(record)))
            ids.append(record.id)
    return items, ids


# Handler names are unique on purpose: Gradio names every event after its function, private ones
# too, and a second `reuse` would push the History's public `/reuse` to `/reuse_1`.
def wire(strip: RecentStrip, services: StudioServices, *, player: list[Any], fill_outputs: list[Any],
         fill: Callable[[Any], list[Any]], refresh_after: list[Any]) -> None:
    """`player` is [video, clip_settings, noise_note, status]; `fill(form)` gives the values of
    `fill_outputs` (the Create form); the strip is redrawn after each event in `refresh_after`."""
    tax = services.taxonomy
    history = services.studio.history

    @refusals("Recent results", outputs=2, taxonomy=tax)
    def redraw_recent(request: gr.Request) -> tuple[list[tuple[Any, str]], list[int]]:
        return listing(services, request)

    def entry(entry_id: Any, request: Any, action: str) -> GenerationRecord:
        number = parse_id(entry_id)
        if number is None:
            refuse("Recent results: click a clip first.")
        return services.access.check(require_creator(services, request), history.get(number), action)

    @refusals("Recent results", outputs=len(player) + 2, taxonomy=tax)
    def play_recent(ids: list[int] | None, request: gr.Request, evt: gr.SelectData) -> tuple[Any, ...]:
        rows = ids or []
        index = evt.index if isinstance(evt.index, int) else -1
        if not 0 <= index < len(rows):
            return tuple(gr.skip() for _ in range(len(player) + 2))
        record = entry(rows[index], request, "open")
        video = history.video_path(record)
        if video is None or not video.is_file():
            refuse(f"Entry #{record.id} has no video any more (deleted from the History?).")
        status = f"Showing #{record.id} (seed {record.seed}); **Reuse its settings** puts them in the form."
        return (str(video), settings_markdown(record, tax), gr.update(visible=is_preview(record.model)), status,
                record.id, gr.update(interactive=True))

    @refusals("Reuse settings", outputs=len(fill_outputs) + 1, taxonomy=tax)
    def reuse_recent(picked: Any, request: gr.Request) -> list[Any]:
        record = entry(picked, request, "reuse")
        gr.Info(f"Settings of #{record.id} are in the form; press Generate to make it again.")
        return [*fill(form_from_request(record.request)), f"Settings of #{record.id} loaded (seed {record.seed})."]

    gr.on(None, redraw_recent, outputs=[strip.gallery, strip.ids], show_progress="hidden", api_visibility="private")
    for event in refresh_after:
        event.then(redraw_recent, outputs=[strip.gallery, strip.ids], show_progress="hidden", api_visibility="private")
    strip.gallery.select(play_recent, inputs=strip.ids, outputs=[*player, strip.picked, strip.reuse],
                         show_progress="hidden", api_visibility="private")
    strip.reuse.click(reuse_recent, inputs=strip.picked, outputs=[*fill_outputs, player[-1]], show_progress="hidden",
                      api_visibility="private")
