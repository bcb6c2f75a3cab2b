"""Presets tab: browse, search and preview presets; use one in Create; rename, duplicate, delete,
import and export.

The table lists `PresetLibrary.search(query)` (built-ins first, then the user's). Selecting a
row shows what the preset sets and the prompt it compiles to. Built-ins are read-only: their
Rename and Delete buttons are disabled and the library refuses them anyway. Every change writes
a new token into the Create tab's `presets_changed`, which refreshes the Create dropdown; the
table refreshes from the same token, so a preset saved in Create shows up here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from engine.core.errors import EngineError, InvalidRequest
from engine.core.presets import Preset, PresetLibrary, slugify

from ..adapters import ui_message
from ..feedback import refuse, refusals, warn
from ..formatting import PRESET_HEADERS, preset_cell, preset_details, preset_rows, preset_summary
from ..services.context import StudioServices
from ..services.downloads import cached_download
from . import create as create_tab

NOTHING_SELECTED = "Select a preset in the table to see what it sets and the prompt it compiles to."


@dataclass
class PresetsTab:
    search: gr.Textbox
    refresh: gr.Button
    count: gr.Markdown
    table: gr.Dataframe
    row_slugs: gr.State  # first cell -> slug of the rows shown (a row is found by its cell, whatever the sort)
    upload: gr.File
    selected: gr.Textbox  # the selected preset's slug (hidden)
    summary: gr.Markdown  # name, id, kind, description
    details: gr.Markdown  # what it sets
    compiled: gr.Textbox
    use: gr.Button
    new_name: gr.Textbox
    rename: gr.Button
    duplicate: gr.Button
    export: gr.DownloadButton
    delete: gr.Button
    confirm_row: gr.Row
    confirm_text: gr.Markdown
    confirm: gr.Button
    keep: gr.Button

    def list_outputs(self) -> list[Any]:
        return [self.table, self.row_slugs, self.count]

    def detail_outputs(self) -> list[Any]:
        return [self.summary, self.details, self.compiled, self.new_name, self.use, self.rename, self.duplicate,
                self.export, self.delete, self.confirm_row]


def build(services: StudioServices) -> PresetsTab:
    rows, slugs, count_text = listing(services, services.page_presets(), "")
    with gr.Row(elem_id="presets-row"):
        with gr.Column(scale=3, min_width=320):
            search = gr.Textbox(label="Search", placeholder="name, description or tag (e.g. whip pan, chibi)",
                                max_lines=1, elem_id="presets-search")
            with gr.Row(equal_height=True, elem_id="presets-count-row"):
                count = gr.Markdown(count_text, elem_classes=["muted"], elem_id="presets-count")
                refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id="presets-refresh")
            table = gr.Dataframe(value=rows, headers=list(PRESET_HEADERS), interactive=False, wrap=True,
                                 max_height=560, column_widths=["34%", "36%", "30%"], show_label=False,
                                 datatype=["markdown", "str", "str"], elem_id="presets-table")
            upload = gr.File(label="Import a preset file (.yaml)", file_types=[".yaml", ".yml"], type="filepath",
                             height=110, elem_id="presets-import")
        with gr.Column(scale=2, min_width=320, elem_id="preset-detail"):
            selected = gr.Textbox("", visible=False, elem_id="presets-selected")
            summary = gr.Markdown(NOTHING_SELECTED, elem_id="preset-summary")
            compiled = gr.Textbox(label="Compiled prompt", lines=3, max_lines=8, interactive=False,
                                  buttons=["copy"], elem_id="preset-compiled",
                                  info="what the text encoder reads with this preset (its narrative included)")
            use = gr.Button("Use in Create", variant="primary", interactive=False, elem_id="preset-use")
            new_name = gr.Textbox(label="Name", max_lines=1, elem_id="preset-new-name",
                                  info="type a new name, then Rename (yours only) or Duplicate")
            with gr.Row(elem_id="preset-actions"):
                rename = gr.Button("Rename", size="sm", interactive=False, min_width=90, elem_id="preset-rename")
                duplicate = gr.Button("Duplicate", size="sm", interactive=False, min_width=90,
                                      elem_id="preset-duplicate")
                export = gr.DownloadButton("Export", size="sm", interactive=False, min_width=90,
                                           elem_id="preset-export")
                delete = gr.Button("Delete…", size="sm", variant="stop", interactive=False, min_width=90,
                                   elem_id="preset-delete")
            with gr.Row(visible=False, elem_id="preset-confirm") as confirm_row:
                confirm_text = gr.Markdown("")
                confirm = gr.Button("Delete for good", variant="stop", size="sm", elem_id="preset-confirm-delete")
                keep = gr.Button("Keep it", size="sm", elem_id="preset-keep")
            details = gr.Markdown("", elem_id="preset-details", elem_classes=["settings-table"])
    return PresetsTab(search, refresh, count, table, gr.State(slugs), upload, selected, summary, details, compiled,
                      use, new_name, rename, duplicate, export, delete, confirm_row, confirm_text, confirm, keep)


def listing(services: StudioServices, library: PresetLibrary,
            query: str | None) -> tuple[list[list[str]], dict[str, str], str]:
    """Rows for the table (built-ins and `library`'s own presets), their first cell -> slug map, and
    a count line."""
    found = library.search(query or "")
    if not (query or "").strip():  # browsing: the user's own presets (the ones to manage) on top
        found = tuple(p for p in found if not p.builtin) + tuple(p for p in found if p.builtin)
    total = library.list()
    builtin = sum(1 for p in total if p.builtin)
    mine = len(total) - builtin
    if words := (query or "").strip():
        count = f"{len(found)} of {len(total)} presets match “{words}”." if found else \
            f"No preset matches “{words}”: every word must appear in a name, description or tag."
    else:
        count = f"{len(total)} presets: {builtin} built-in (read-only), {mine} of yours."
    if library.problems:
        count += f" {len(library.problems)} unreadable file(s) in {library.user_dir} skipped."
    return preset_rows(found, services.taxonomy), {preset_cell(p): p.slug for p in found}, count


def export_file(services: StudioServices, library: PresetLibrary, preset: Preset) -> str:
    """The preset written to a file the browser can download, once per version of the preset
    (its whole content is the key: a rename or edit is a new file)."""
    key = f"{library.user_dir}\n{preset!r}"  # the dataclass repr holds every field
    return str(cached_download(services.settings, key, f"{preset.slug}.yaml",
                               lambda path: library.export(preset.slug, path)))


def details(services: StudioServices, library: PresetLibrary, slug: str | None) -> list[Any]:
    """Values for `PresetsTab.detail_outputs()`."""
    off = gr.update(interactive=False)
    if not slug:
        return [NOTHING_SELECTED, "", "", "", off, off, off, gr.update(value=None, interactive=False), off,
                gr.update(visible=False)]
    try:
        preset = library.get(slug)
        compiled = services.taxonomy.compile_prompt(preset.narrative, preset.tags)
        path = export_file(services, library, preset)
    except EngineError as exc:
        refuse(ui_message(exc, services.taxonomy), "Presets")
    on, editable = gr.update(interactive=True), gr.update(interactive=not preset.builtin)  # built-ins: read-only
    return [preset_summary(preset), preset_details(preset, services.taxonomy), compiled, preset.name,
            on, editable, on, gr.update(value=path, interactive=True), editable, gr.update(visible=False)]


def copy_name(library: PresetLibrary, name: str) -> str:
    """"Name (copy)", "Name (copy 2)", ...: the first that is free."""
    for n in range(1, 100):
        candidate = f"{name} (copy)" if n == 1 else f"{name} (copy {n})"
        try:
            if not library.exists(slugify(candidate)):
                return candidate
        except InvalidRequest:
            break
    return f"{name} (copy)"


def pick(names: dict[str, str] | None, evt: gr.SelectData) -> Any:
    """A table click: the slug of the row's preset (its first cell), from the row's own values."""
    row = evt.row_value or []
    slug = (names or {}).get(str(row[0])) if row else None
    return slug if slug else gr.skip()


class PresetsHandlers:
    """The tab's event handlers. Every one works on the presets of the person asking (`library_for`:
    their own folder in an owned studio; raters are refused), so no one lists, renames or deletes
    another's presets."""

    def __init__(self, services: StudioServices) -> None:
        self.services = services
        self.tax = services.taxonomy

    def refresh(self, query: str | None, request: gr.Request) -> tuple[Any, ...]:
        return listing(self.services, self.services.library_for(request), query)

    def show(self, slug: str | None, request: gr.Request) -> list[Any]:
        return details(self.services, self.services.library_for(request), slug)

    def use(self, slug: str | None, request: gr.Request, *values: Any) -> list[Any]:
        if not slug:
            refuse("Select a preset in the table first.")
        library = self.services.library_for(request)
        filled = create_tab.preset_fill(self.services, library, slug, values)
        gr.Info(f"Preset '{create_tab.preset_label(library, slug)[0]}' is in the Create tab.")
        return [gr.update(value=slug), *filled, gr.Tabs(selected="create")]

    def changed(self, library: PresetLibrary, query: str | None, slug: str,
                renamed: dict[str, str] | None = None) -> list[Any]:
        """The outputs after a change: the table (3), the selection, the Create tab's preset signal."""
        return [*listing(self.services, library, query), slug, create_tab.presets_changed(renamed)]

    def rename(self, slug: str | None, new_name: str | None, query: str | None, request: gr.Request) -> list[Any]:
        if not slug:
            refuse("Select a preset in the table first.")
        library = self.services.library_for(request)
        old = library.get(slug)
        if (new_name or "").strip() == old.name:
            refuse("Name: it is unchanged; type a new name first.")
        renamed = library.rename(slug, new_name or "")
        gr.Info(f"Renamed '{old.name}' to '{renamed.name}'.")
        return self.changed(library, query, renamed.slug, {slug: renamed.slug})

    def duplicate(self, slug: str | None, new_name: str | None, query: str | None,
                  request: gr.Request) -> list[Any]:
        if not slug:
            refuse("Select a preset in the table first.")
        library = self.services.library_for(request)
        source = library.get(slug)
        name = (new_name or "").strip()
        name = copy_name(library, source.name) if not name or name == source.name else name
        copy = library.duplicate(slug, name)
        gr.Info(f"Saved a copy of '{source.name}' as '{copy.name}' (yours, editable).")
        return self.changed(library, query, copy.slug)

    def ask(self, slug: str | None, request: gr.Request) -> tuple[Any, str]:
        if not slug:
            refuse("Select a preset in the table first.")
        preset = self.services.library_for(request).get(slug)
        if preset.builtin:
            refuse(f"'{preset.name}' is a built-in preset and read-only; duplicate it to make your own.")
        return gr.update(visible=True), f"Delete your preset **{preset.name}**? Its file is removed for good."

    def delete(self, slug: str | None, query: str | None, request: gr.Request) -> list[Any]:
        if not slug:
            refuse("Select a preset in the table first.")
        library = self.services.library_for(request)
        name = library.get(slug).name
        library.delete(slug)
        gr.Info(f"Deleted preset '{name}'.")
        return self.changed(library, query, "")

    def import_preset(self, path: str | None, query: str | None, request: gr.Request) -> list[Any]:
        if not path:
            return [gr.skip()] * 6
        try:
            library = self.services.library_for(request)
            preset = library.import_file(Path(path))
        except EngineError as exc:
            # The file is refused as a whole, naming the key and the file; nothing was written. The
            # table and the selection stay; the upload box is emptied, ready for a corrected file.
            warn(f"Import refused — {ui_message(exc, self.tax)}", "Import preset")
            return [gr.skip()] * 5 + [None]
        gr.Info(f"Imported '{preset.name}' as one of your presets.")
        return [*self.changed(library, query, preset.slug), None]


def wire(tab: PresetsTab, services: StudioServices, *, create: create_tab.CreateTab, tabs: gr.Tabs,
         presets_tab: gr.Tab) -> None:
    """`create` is the Create tab: "Use in Create" fills it through its own preset handler."""
    h = PresetsHandlers(services)
    tax = services.taxonomy
    refresh = refusals("Presets", outputs=3, taxonomy=tax)(h.refresh)
    show = refusals("Presets", outputs=len(tab.detail_outputs()), taxonomy=tax)(h.show)
    use = refusals("Use in Create", outputs=len(create.fill_outputs()) + 4, taxonomy=tax)(h.use)
    rename = refusals("Rename", outputs=5, taxonomy=tax)(h.rename)
    duplicate = refusals("Duplicate", outputs=5, taxonomy=tax)(h.duplicate)
    ask = refusals("Delete", outputs=2, taxonomy=tax)(h.ask)
    delete = refusals("Delete", outputs=5, taxonomy=tax)(h.delete)

    lists = tab.list_outputs()
    after_change = [*lists, tab.selected, create.presets_changed]
    tab.search.change(refresh, inputs=tab.search, outputs=lists, show_progress="hidden", trigger_mode="always_last",
                      api_name="presets")
    tab.refresh.click(refresh, inputs=tab.search, outputs=lists, show_progress="hidden", api_visibility="private")
    presets_tab.select(refresh, inputs=tab.search, outputs=lists, show_progress="hidden", api_visibility="private")
    create.presets_changed.change(refresh, inputs=tab.search, outputs=lists, show_progress="hidden",
                                  api_visibility="private")
    tab.table.select(pick, inputs=tab.row_slugs, outputs=tab.selected, show_progress="hidden",
                     api_visibility="private")
    # Every way the selection changes (a click, a rename, a copy, an import, a delete) shows it.
    # scroll_to_output: on a phone the details are below the table.
    tab.selected.change(show, inputs=tab.selected, outputs=tab.detail_outputs(), show_progress="hidden",
                        api_name="preset_details", scroll_to_output=True)
    tab.use.click(use, inputs=[tab.selected, *create.inputs()],
                  outputs=[create.preset, *create.fill_outputs(), create.preset_snapshot, create.preset_badge, tabs],
                  api_name="use_preset")
    # .success(show): a rename that only changes case keeps the slug, so `selected` does not change.
    tab.rename.click(rename, inputs=[tab.selected, tab.new_name, tab.search], outputs=after_change,
                     api_name="rename_preset").success(show, inputs=tab.selected, outputs=tab.detail_outputs(),
                                                       show_progress="hidden", api_visibility="private")
    tab.duplicate.click(duplicate, inputs=[tab.selected, tab.new_name, tab.search], outputs=after_change,
                        api_name="duplicate_preset")
    tab.delete.click(ask, inputs=tab.selected, outputs=[tab.confirm_row, tab.confirm_text],
                     api_name="delete_preset_ask")
    tab.keep.click(lambda: gr.update(visible=False), outputs=tab.confirm_row, api_visibility="private")
    tab.confirm.click(delete, inputs=[tab.selected, tab.search], outputs=after_change, api_name="delete_preset")
    tab.upload.upload(h.import_preset, inputs=[tab.upload, tab.search], outputs=[*after_change, tab.upload],
                      api_name="import_preset")
