"""History tab: past clips as a poster gallery, filters, a detail view, reuse and delete.

The gallery shows one page of `HistoryService.list` (newest first). Selecting an entry plays
it and shows every setting (and the reward scores stored for it, per reward model); failed and
cancelled entries show why. "Reuse settings" fills the Create tab and switches to it; "Delete"
asks once more before removing the row and its files.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr
from PIL import Image, ImageDraw

from engine.core.errors import EngineError

from .. import adapters
from ..feedback import refuse, refusals
from ..formatting import NOISE_NOTE, STATUS_ICONS, caption, details_markdown, error_markdown, is_preview
from ..services.context import StudioServices
from ..services.history_view import STATUSES, GenerationRecord, HistoryPage
from ..services.identity import require_creator

log = logging.getLogger(__name__)

PAGE_SIZE = 12
ANY = ""


@dataclass
class HistoryTab:
    text: gr.Textbox
    tag: gr.Dropdown
    model: gr.Dropdown
    status: gr.Dropdown
    refresh: gr.Button
    gallery: gr.Gallery
    page: gr.Number
    page_label: gr.Markdown
    newer: gr.Button
    older: gr.Button
    page_ids: gr.State
    selected: gr.Textbox
    clip_box: gr.Column  # hidden for entries without a clip (queued, failed, cancelled)
    video: gr.Video
    noise_note: gr.Markdown
    error: gr.Markdown
    details: gr.Markdown
    reuse: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    confirm_text: gr.Markdown
    confirm: gr.Button
    keep: gr.Button

    def filters(self) -> list[Any]:
        return [self.text, self.tag, self.model, self.status, self.page]

    def list_outputs(self) -> list[Any]:
        return [self.gallery, self.page_ids, self.page, self.page_label]

    def entry_outputs(self) -> list[Any]:
        return [self.video, self.noise_note, self.error, self.details, self.reuse, self.delete, self.confirm_row,
                self.clip_box]


@functools.lru_cache(maxsize=8)
def placeholder(status: str) -> Image.Image:
    """A square poster for entries without one (queued, running, failed, cancelled)."""
    colours = {"queued": "#5b6b8c", "running": "#3b7dd8", "failed": "#b23b3b", "cancelled": "#7a7a7a"}
    img = Image.new("RGB", (256, 256), colours.get(status, "#555555"))
    draw = ImageDraw.Draw(img)
    text = status.upper()
    left, top, right, bottom = draw.textbbox((0, 0), text, font_size=30)
    draw.text(((256 - (right - left)) / 2 - left, (256 - (bottom - top)) / 2 - top), text, fill="white", font_size=30)
    return img


def tag_filter_choices(services: StudioServices) -> list[tuple[str, str]]:
    tax = services.taxonomy
    out = [("Any tag", ANY)]
    for f in tax.fields:
        axis = tax.axis(f.axis).label
        out += [(f"{axis} · {f.label}: {v.label}", f"{f.id}={v.id}") for v in f.values]
    return out


def build(services: StudioServices) -> HistoryTab:
    with gr.Row(elem_id="history-filters"):
        text = gr.Textbox(label="Search", placeholder="words from the narrative or prompt", min_width=150, scale=2)
        # Every tag listed at once (Gradio shows 100 by default: Camera and VFX were left out).
        choices = tag_filter_choices(services)
        tag = gr.Dropdown(choices, value=ANY, label="Tag", min_width=150, scale=2,
                          num_choices_shown=len(choices), elem_id="history-tag")
        model = gr.Dropdown([("Any model", ANY), *[(s.label, s.id) for s in adapters.registry_models()]],
                            value=ANY, label="Model", min_width=150, scale=1)
        status = gr.Dropdown([("Any status", ANY), *[(f"{STATUS_ICONS[s]} {s}", s) for s in STATUSES]],
                             value=ANY, label="Status", min_width=150, scale=1)
        with gr.Column(scale=0, min_width=90):
            refresh = gr.Button("Refresh", size="sm", elem_id="history-refresh")
    with gr.Row(elem_id="history-row"):
        with gr.Column(scale=3, min_width=320):
            gallery = gr.Gallery(label="Clips, newest first", columns=3, allow_preview=False,
                                 object_fit="cover", fit_columns=False, elem_id="history-gallery", buttons=[],
                                 interactive=False)
            with gr.Row(elem_id="history-pager"):
                newer = gr.Button("◀ Newer", size="sm", min_width=80, scale=0, elem_id="history-newer")
                page = gr.Number(1, label="Page", precision=0, min_width=80, scale=0, show_label=False,
                                 elem_id="history-page")
                older = gr.Button("Older ▶", size="sm", min_width=80, scale=0, elem_id="history-older")
                page_label = gr.Markdown("", elem_classes=["muted"], elem_id="history-page-label")
        with gr.Column(scale=2, min_width=320):
            selected = gr.Textbox(label="Entry #", placeholder="click a clip, or type a number and press Enter",
                                  max_lines=1, elem_id="history-selected")
            with gr.Column(visible=False, elem_id="history-clip") as clip_box:
                noise_note = gr.Markdown(NOISE_NOTE, visible=False, elem_classes=["noise-note"])
                video = gr.Video(label="Clip", interactive=False, autoplay=True, loop=True, buttons=["download"],
                                 height=360, elem_id="history-video")
            error = gr.Markdown("", elem_classes=["error-box"], elem_id="history-error")
            with gr.Row():
                reuse = gr.Button("Reuse settings", variant="primary", interactive=False, elem_id="history-reuse")
                delete = gr.Button("Delete…", variant="stop", interactive=False, elem_id="history-delete")
            with gr.Row(visible=False, elem_id="history-confirm") as confirm_row:
                confirm_text = gr.Markdown("")
                confirm = gr.Button("Delete for good", variant="stop", size="sm", elem_id="history-confirm-delete")
                keep = gr.Button("Keep it", size="sm", elem_id="history-keep")
            details = gr.Markdown("", elem_id="history-details", elem_classes=["settings-table"])
    return HistoryTab(text, tag, model, status, refresh, gallery, page, page_label, newer, older, gr.State([]),
                      selected, clip_box, video, noise_note, error, details, reuse, delete, confirm_row, confirm_text,
                      confirm, keep)


def _gallery_item(services: StudioServices, record: GenerationRecord) -> tuple[Any, str]:
    poster = services.studio.history.poster_path(record)
    image: Any = str(poster) if poster is not None and poster.is_file() else placeholder(record.status)
    return image, caption(record)



# Past this a page is only ever "the last page"; SQLite's OFFSET is a 64-bit integer.
MAX_PAGE = 10**9


def page_number(page: Any) -> int:
    """The page asked for, 1..MAX_PAGE (a larger one shows the last page); anything that is not a
    finite number is refused in one line, never passed to SQL."""
    try:
        value = float(page or 1)
    except (TypeError, ValueError):
        refuse("Page: must be a whole number of at least 1.")
    if value != value or value in (float("inf"), float("-inf")):
        refuse("Page: must be a whole number of at least 1.")
    return int(min(max(value, 1), MAX_PAGE))


@dataclass
class EntryView:
    """What showing an entry changes, named; `values()` lists them in `HistoryTab.entry_outputs()` order."""
    video: Any
    noise_note: Any
    error: Any
    details: Any
    reuse: Any
    delete: Any
    confirm_row: Any
    clip_box: Any

    def values(self) -> tuple[Any, ...]:
        return (self.video, self.noise_note, self.error, self.details, self.reuse, self.delete, self.confirm_row,
                self.clip_box)


class HistoryHandlers:
    """The tab's event handlers. `list_page` and `show` are wrapped in `refusals` here, because
    `delete` calls them too: a refusal there is their own toast, after the entry is gone."""

    def __init__(self, tab: HistoryTab, services: StudioServices,
                 reuse_values: Callable[[GenerationRecord], list[Any]], reuse_outputs: int) -> None:
        self.services, self.reuse_values = services, reuse_values
        self.tax = services.taxonomy
        self.history = services.studio.history
        tax = self.tax
        # Named as before (`name=`): Gradio names the events without an api_name after them.
        self.list_page = refusals("History", outputs=len(tab.list_outputs()), taxonomy=tax,
                                  name="list_page")(self._list_page)
        self.show = refusals("History", outputs=len(tab.entry_outputs()), taxonomy=tax, name="show")(self._show)
        self.reuse = refusals("Reuse settings", outputs=reuse_outputs + 1, taxonomy=tax, name="reuse")(self._reuse)
        self.ask = refusals("Delete", outputs=2, taxonomy=tax, name="ask")(self._ask)
        self.delete = refusals("Delete", outputs=len(tab.list_outputs()) + 1 + len(tab.entry_outputs()),
                               taxonomy=tax, name="delete")(self._delete)

    def _list_page(self, text: str | None, tag: str | None, model: str | None, status: str | None,
                   page: float | None, request: gr.Request) -> tuple[list[Any], list[int], int, str]:
        number = page_number(page)
        owners = self.services.access.owners_filter(require_creator(self.services, request))  # what is theirs

        def fetch(n: int) -> HistoryPage:
            return self.history.list(text=text or None, tag=tag or None, model=model or None, status=status or None,
                                     owners=owners, limit=PAGE_SIZE, offset=(n - 1) * PAGE_SIZE)

        result = fetch(number)
        pages = max((result.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        if number > pages:  # e.g. the last entry of the last page was just deleted
            number = pages
            result = fetch(number)
        items = [_gallery_item(self.services, r) for r in result.items]
        label = f"Page {number} of {pages} · {result.total} entr{'y' if result.total == 1 else 'ies'}"
        if not result.total:  # an empty gallery alone reads as broken
            filtered = any((text, tag, model, status))
            label = ("No clip matches these filters; clear one to see more." if filtered else
                     "No clips yet: generate one in the Create tab and it shows up here.")
        return items, [r.id for r in result.items], number, label

    def first_page(self, text: str | None, tag: str | None, model: str | None, status: str | None,
                   request: gr.Request) -> Any:
        return self.list_page(text, tag, model, status, 1, request)

    def step(self, delta: int) -> Callable[..., Any]:
        def handler(text: str | None, tag: str | None, model: str | None, status: str | None,
                    page: float | None, request: gr.Request) -> Any:
            return self.list_page(text, tag, model, status, max(page_number(page) + delta, 1), request)
        return handler

    def entry(self, entry_id: int, request: gr.Request | None, action: str) -> GenerationRecord:
        """The entry if it is the viewer's to `action` (others' read as missing)."""
        return self.services.access.check(require_creator(self.services, request), self.history.get(entry_id),
                                          action)

    def _show(self, selected: str | int | None, request: gr.Request | None = None) -> tuple[Any, ...]:
        hidden = gr.update(visible=False)
        entry_id = adapters.parse_id(selected)
        if entry_id is None:
            return EntryView(None, hidden, "", "", gr.update(interactive=False), gr.update(interactive=False),
                             hidden, hidden).values()
        record = self.entry(entry_id, request, "open")
        path = self.history.video_path(record)
        video = str(path) if path is not None and path.is_file() else None
        try:
            scores = self.services.stored_reward_scores(record.id)
        except EngineError as exc:  # the scores are extra: the entry is still shown without them
            log.warning("could not read the reward scores of entry %d: %s", record.id, exc)
            scores = []
        paired = self.history.rating_pairs(record.id)  # said on the button, before any "cannot be undone"
        delete = (gr.update(interactive=False, value=f"In {paired} rating pair{'s' * (paired != 1)}") if paired
                  else gr.update(interactive=record.status != "running", value="Delete…"))
        return EntryView(video=video, noise_note=gr.update(visible=is_preview(record.model)),
                         error=error_markdown(record), details=details_markdown(record, self.tax, scores),
                         reuse=gr.update(interactive=True), delete=delete, confirm_row=hidden,
                         clip_box=gr.update(visible=video is not None)).values()

    def _reuse(self, selected: str | int | None, request: gr.Request) -> list[Any]:
        entry_id = adapters.parse_id(selected)
        if entry_id is None:
            refuse("Entry #: pick a clip in the gallery or type its number first.")
        record = self.entry(entry_id, request, "reuse")
        values = self.reuse_values(record)
        gr.Info(f"Settings of entry #{record.id} are in the Create tab.")
        return values + [gr.Tabs(selected="create")]

    def _ask(self, selected: str | int | None, request: gr.Request) -> tuple[Any, str]:
        entry_id = adapters.parse_id(selected)
        if entry_id is None:
            refuse("Entry #: pick a clip in the gallery or type its number first.")
        self.entry(entry_id, request, "delete")
        if paired := self.history.rating_pairs(entry_id):
            refuse(f"Entry #{entry_id} is in {paired} rating pair(s); animators' judgements refer to it, so it is "
                   "kept.")
        return gr.update(visible=True), f"Delete entry **#{entry_id}** and its files? This cannot be undone."

    def _delete(self, selected: str | int | None, text: str | None, tag: str | None, model: str | None,
                status: str | None, page: float | None, request: gr.Request) -> list[Any]:
        entry_id = adapters.parse_id(selected)
        if entry_id is None:
            refuse("Entry #: pick a clip in the gallery or type its number first.")
        self.entry(entry_id, request, "delete")
        self.history.delete(entry_id)
        gr.Info(f"Deleted entry #{entry_id} and its files.")
        return [*self.list_page(text, tag, model, status, page, request), "", *self.show(None)]


def pick(ids: list[int], evt: gr.SelectData) -> Any:
    index = evt.index if isinstance(evt.index, int) else None
    return str(ids[index]) if index is not None and 0 <= index < len(ids) else gr.skip()


def wire(tab: HistoryTab, services: StudioServices, *, tabs: gr.Tabs, history_tab: gr.Tab,
         reuse_outputs: list[Any], reuse_values: Callable[[GenerationRecord], list[Any]]) -> None:
    """`reuse_outputs`/`reuse_values` come from the Create tab, so this tab never reaches into it."""
    h = HistoryHandlers(tab, services, reuse_values, len(reuse_outputs))
    filters = [tab.text, tab.tag, tab.model, tab.status]
    for trigger in (tab.text.submit, tab.tag.input, tab.model.input, tab.status.input):
        trigger(h.first_page, inputs=filters, outputs=tab.list_outputs(), show_progress="hidden",
                api_visibility="private")
    tab.refresh.click(h.list_page, inputs=tab.filters(), outputs=tab.list_outputs(), api_name="history",
                      show_progress="hidden")
    history_tab.select(h.list_page, inputs=tab.filters(), outputs=tab.list_outputs(), show_progress="hidden",
                       api_visibility="private")
    tab.page.submit(h.list_page, inputs=tab.filters(), outputs=tab.list_outputs(), show_progress="hidden",
                    api_visibility="private")
    tab.newer.click(h.step(-1), inputs=tab.filters(), outputs=tab.list_outputs(), show_progress="hidden",
                    api_visibility="private")
    tab.older.click(h.step(1), inputs=tab.filters(), outputs=tab.list_outputs(), show_progress="hidden",
                    api_visibility="private")
    tab.gallery.select(pick, inputs=tab.page_ids, outputs=tab.selected, show_progress="hidden",
                       api_visibility="private").then(
        h.show, inputs=tab.selected, outputs=tab.entry_outputs(), show_progress="hidden", api_visibility="private")
    tab.selected.submit(h.show, inputs=tab.selected, outputs=tab.entry_outputs(), api_name="history_entry",
                        show_progress="hidden")
    tab.reuse.click(h.reuse, inputs=tab.selected, outputs=[*reuse_outputs, tabs], api_name="reuse")
    tab.delete.click(h.ask, inputs=tab.selected, outputs=[tab.confirm_row, tab.confirm_text], api_name="delete_ask")
    tab.keep.click(lambda: gr.update(visible=False), outputs=tab.confirm_row, api_visibility="private")
    tab.confirm.click(h.delete, inputs=[tab.selected, *tab.filters()],
                      outputs=[*tab.list_outputs(), tab.selected, *tab.entry_outputs()], api_name="delete")
