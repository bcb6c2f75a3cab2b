"""Eval tab: the runs of `python -m engine eval run`, their report and plots, the clip behind any
row, and the run's same-prompt / same-seed clip pairs sent to the Rate tab.

Layout and wiring only; what is listed and made is `app.services.eval_view`. Eval runs belong to
the studio (made on its machine), not to one visitor: in an owned (hosted) studio only admins see
them, raters never (the tab is hidden from them and every handler refuses them). Sending pairs
and the human-vs-automatic table act as the admin signed in to the Rate tab (its session state,
or the studio login of a `--auth raters` studio); the rating service checks the role.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from PIL import Image

from engine.core.errors import EngineError
from engine.rating.types import PermissionDenied

from ..feedback import Refusal, refuse, refusals, unchanged, warn
from ..services import eval_view as view
from ..services.context import StudioServices
from ..services.identity import require_creator
from ..services.rating_view import rating_message, session_rater

log = logging.getLogger(__name__)

TITLE = "Eval"
ADMIN_NEEDED = "Sending pairs needs an admin account: sign in with one in the Rate tab first"


@dataclass
class EvalTab:
    run: gr.Dropdown
    refresh: gr.Button
    write: gr.Button
    status: gr.Markdown  # how to make a run when there is none; the run's summary otherwise
    body: gr.Column
    report: gr.Markdown
    plots_note: gr.Markdown
    plots: gr.Gallery
    clips: gr.Dataframe
    selected: gr.Textbox  # the item key of the clip on screen ("system|prompt|seed")
    video: gr.Video
    clip_info: gr.Markdown
    system_a: gr.Dropdown
    system_b: gr.Dropdown
    send: gr.Button
    send_report: gr.Markdown
    compare: gr.Button
    compare_note: gr.Markdown
    compare_table: gr.Dataframe

    def run_outputs(self) -> list[Any]:
        return [self.status, self.body, self.report, self.plots_note, self.plots, self.clips, self.system_a,
                self.system_b, self.selected, self.video, self.clip_info]


def build(services: StudioServices) -> EvalTab:
    with gr.Row(elem_id="eval-runs"):
        # Custom values allowed: the choices change under the page (new runs), and every handler
        # checks the run id itself, so a stale or scripted value gets a message, not a schema error.
        run = gr.Dropdown([], value=None, label="Eval run", allow_custom_value=True, scale=4, min_width=240,
                          elem_id="eval-run")
        with gr.Column(scale=0, min_width=130):
            refresh = gr.Button("Refresh", size="sm", elem_id="eval-refresh")
            write = gr.Button("Write report", size="sm", elem_id="eval-write")
    root = view.eval_dir(services.settings.data_dir)
    status = gr.Markdown(view.empty_text(root) if not view.list_runs(root) else "Pick a run.", elem_id="eval-status")
    with gr.Column(visible=False, elem_id="eval-body") as body:
        with gr.Row(elem_id="eval-clips-row"):
            with gr.Column(scale=5, min_width=320):
                clips = gr.Dataframe(headers=view.CLIP_HEADERS, value=[], interactive=False, wrap=True,
                                     max_height=420, label="Clips (select a row to play it)", elem_id="eval-clips")
            with gr.Column(scale=2, min_width=300):
                selected = gr.Textbox(label="Clip", placeholder="select a row, or type system|prompt|seed",
                                      max_lines=1, elem_id="eval-selected")
                video = gr.Video(label="Clip", interactive=False, autoplay=True, loop=True, height=320,
                                 buttons=["download"], elem_id="eval-video")
                clip_info = gr.Markdown("", elem_id="eval-clip-info")
        with gr.Accordion("Plots", open=True, elem_id="eval-plots-box"):
            plots_note = gr.Markdown("", elem_classes=["muted"], elem_id="eval-plots-note")
            plots = gr.Gallery(label="Plots", columns=3, object_fit="contain", height="auto", interactive=False,
                               show_label=False, visible=False, elem_id="eval-plots")
        with gr.Accordion("Report", open=True, elem_id="eval-report-box"):
            report = gr.Markdown("", elem_id="eval-report", elem_classes=["settings-table"])
        with gr.Group(elem_id="eval-pairs"):
            gr.Markdown("**Send pairs to Rate** · for every prompt and seed, system A's clip against system B's "
                        "(both finished) becomes a blind rating pair; pairs made before are not made twice. "
                        "Needs an admin signed in to the Rate tab.", elem_classes=["muted"])
            with gr.Row(equal_height=True):
                system_a = gr.Dropdown([], value=None, label="System A", allow_custom_value=True, min_width=160,
                                       elem_id="eval-system-a")
                system_b = gr.Dropdown([], value=None, label="System B", allow_custom_value=True, min_width=160,
                                       elem_id="eval-system-b")
                with gr.Column(scale=0, min_width=190):
                    send = gr.Button("Send pairs to Rate", variant="primary", size="sm", elem_id="eval-send")
                    compare = gr.Button("Animators vs metrics", size="sm", elem_id="eval-compare")
            send_report = gr.Markdown("", elem_id="eval-send-report")
            compare_note = gr.Markdown("", elem_classes=["muted"], elem_id="eval-compare-note")
            compare_table = gr.Dataframe(value=[], interactive=False, wrap=True, visible=False, show_label=False,
                                         elem_id="eval-compare-table")
    return EvalTab(run, refresh, write, status, body, report, plots_note, plots, clips, selected, video, clip_info,
                   system_a, system_b, send, send_report, compare, compare_note, compare_table)


def _plot_images(paths: list[Path]) -> list[tuple[Image.Image, str]]:
    """Pictures, not paths: the eval folder is not one Gradio serves files from (and need not be)."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                out.append((img.copy(), path.stem.replace("_", " ")))
        except OSError as exc:  # a plot being rewritten right now: the others still show
            log.warning("plot %s could not be read: %s", path, exc)
    return out


def _system_pick(systems: tuple[str, ...] | list[str], index: int, current: str | None) -> Any:
    value = current if current in systems else (systems[index] if len(systems) > index else None)
    return gr.update(choices=list(systems), value=value)


@dataclass
class RunView:
    """What showing a run changes, named; `values()` lists them in `EvalTab.run_outputs()` order."""
    status: Any
    body: Any
    report: Any = ""
    plots_note: Any = ""
    plots: Any = None
    clips: Any = None
    system_a: Any = None
    system_b: Any = None
    selected: Any = ""
    video: Any = None
    clip_info: Any = ""

    def values(self) -> list[Any]:
        return [self.status, self.body, self.report, self.plots_note, self.plots, self.clips, self.system_a,
                self.system_b, self.selected, self.video, self.clip_info]


class EvalHandlers:
    """The tab's event handlers over the eval folder and the Create tab's history."""

    def __init__(self, tab: EvalTab, services: StudioServices) -> None:
        self.tab, self.services = tab, services
        self.root = view.eval_dir(services.settings.data_dir)
        self.history = services.studio.history

    def allowed(self, request: gr.Request | None) -> None:
        viewer = require_creator(self.services, request)  # raters: refused
        if not self.services.access.sees_all(viewer):
            refuse("Eval runs are the studio's own: in a hosted studio only admins see them.")

    def show(self, run_id: str | None, sys_a: str | None = None, sys_b: str | None = None) -> list[Any]:
        if not run_id:
            runs = view.list_runs(self.root)
            none = gr.update(choices=[], value=None)
            return RunView(status=view.empty_text(self.root) if not runs else "Pick a run.",
                           body=gr.update(visible=False), plots=gr.update(value=[], visible=False),
                           clips=view.table([]), system_a=none, system_b=none).values()
        folder = view.open_run(self.root, run_id)
        entry = view.run_entry(folder)
        plots = view.plot_files(folder)
        summary = (f"Run **{entry.run_id}** · suite {entry.suite} · {entry.done}/{entry.total} clips done · "
                   f"systems {', '.join(entry.systems)} · folder `{folder.root}`")
        images = _plot_images(plots)
        return RunView(status=summary, body=gr.update(visible=True), report=view.report_markdown(folder),
                       plots_note=view.plot_note(folder, plots), plots=gr.update(value=images, visible=bool(images)),
                       clips=view.table(view.clip_rows(folder)), system_a=_system_pick(entry.systems, 0, sys_a),
                       system_b=_system_pick(entry.systems, 1, sys_b)).values()

    def refresh(self, current: str | None, sys_a: str | None, sys_b: str | None, request: gr.Request) -> list[Any]:
        self.allowed(request)
        runs = view.list_runs(self.root)
        ids = [r.run_id for r in runs]
        run_id = current if current in ids else (ids[0] if ids else None)  # the newest, when none is picked
        return [gr.update(choices=view.run_choices(runs), value=run_id), *self.show(run_id, sys_a, sys_b)]

    def pick_run(self, run_id: str | None, request: gr.Request) -> list[Any]:
        self.allowed(request)
        return self.show(run_id)

    def write(self, run_id: str | None, sys_a: str | None, sys_b: str | None, request: gr.Request) -> list[Any]:
        self.allowed(request)
        from engine.eval.report import write_report

        folder = view.open_run(self.root, run_id)
        try:
            written = write_report(folder)
        except (OSError, ImportError) as exc:  # a full disk, or the plotting library missing
            refuse(f"The report could not be written: {exc}")
        pictures = sum(1 for p in written if p.suffix == ".png")
        files = ", ".join(p.name for p in written if p.suffix != ".png")
        gr.Info(f"Wrote {files} and {pictures} plot{'s' if pictures != 1 else ''} in {folder.root}.")
        return self.show(run_id, sys_a, sys_b)

    def play(self, run_id: str | None, key: str | None, request: gr.Request) -> list[Any]:
        self.allowed(request)
        if not key:
            return [None, ""]
        clip = view.find_clip(view.open_run(self.root, run_id), key.strip(), self.history)
        return [None if clip.video is None else str(clip.video), view.clip_markdown(clip)]

    def as_admin(self, fn: Callable[..., Any], outputs: int) -> Callable[..., Any]:
        """Run `fn(service, rater, folder, *args)` as the Rate tab's signed-in account. Refusals are
        warning toasts (an API caller gets them as errors) and the outputs keep their values."""
        def handler(request: gr.Request, state: Any, run_id: str | None, *args: Any) -> Any:
            try:
                self.allowed(request)
                folder = view.open_run(self.root, run_id)
                try:
                    service = self.services.rating
                except EngineError as exc:  # a broken rating config: the rest of the tab still works
                    refuse(f"Rating is not available in this studio: {exc}")
                try:
                    rater = session_rater(service, state, request)
                except PermissionDenied as exc:
                    refuse(f"{ADMIN_NEEDED} ({rating_message(exc).rstrip('.')}).")
                if not rater.is_admin:
                    refuse(f"{ADMIN_NEEDED}: '{rater.name}' is a rater account.")
                return fn(service, rater, folder, *args)
            except EngineError as exc:  # the service's refusals (not an admin any more, a bad system)
                warn(rating_message(exc), TITLE)
            return unchanged(outputs)
        handler.__name__ = fn.__name__
        return refusals(TITLE, outputs=outputs)(handler)

    def visibility(self, request: gr.Request) -> Any:
        """Raters, and non-admins of an owned studio, never see the tab (the handlers refuse them too)."""
        try:
            self.allowed(request)
        except (EngineError, Refusal) as exc:
            log.debug("eval tab hidden: %s", exc)
            return gr.update(visible="hidden")  # "hidden": 6.31 leaves the tab's button with False
        return gr.skip()


def pick_row(evt: gr.SelectData) -> Any:
    key = view.key_of_row(evt.row_value)  # the row's own values: right even after sorting the table
    return key if key is not None else gr.skip()


def send(service: Any, rater: Any, folder: Any, sys_a: str | None, sys_b: str | None) -> str:
    plan = view.plan_pairs(folder, sys_a, sys_b)
    report = view.send_pairs(service, rater, plan)
    gr.Info(f"{len(report.created)} new rating pair{'s' if len(report.created) != 1 else ''}, "
            f"{report.existing} already there.")
    return report.markdown(plan)


def compare(service: Any, rater: Any, folder: Any) -> list[Any]:
    table = view.human_vs_automatic(service, rater, folder)
    note = (f"{table['judged']} judged pair{'s' if table['judged'] != 1 else ''} of this run's clips. "
            "Automatic: means over the run's finished clips (✓ = share adhering). Animators: Bradley-Terry "
            "score (0 = average) and wins–ties–losses per dimension, over this run's pairs only.")
    return [note, gr.update(value={"headers": table["headers"], "data": table["data"]}, visible=True)]


def wire(tab: EvalTab, services: StudioServices, *, session: gr.State, eval_page: gr.Tab,
         blocks: gr.Blocks) -> None:
    """`session` is the Rate tab's sign-in state (who sends pairs)."""
    h = EvalHandlers(tab, services)
    refresh = refusals(TITLE, outputs=1 + len(tab.run_outputs()))(h.refresh)
    pick_run = refusals(TITLE, outputs=len(tab.run_outputs()))(h.pick_run)
    write = refusals("Write report", outputs=len(tab.run_outputs()))(h.write)
    play = refusals("Clip", outputs=2)(h.play)
    systems = [tab.system_a, tab.system_b]
    eval_page.select(refresh, inputs=[tab.run, *systems], outputs=[tab.run, *tab.run_outputs()],
                     show_progress="hidden", api_visibility="private")
    tab.refresh.click(refresh, inputs=[tab.run, *systems], outputs=[tab.run, *tab.run_outputs()],
                      api_name="eval_runs", show_progress="hidden")
    tab.run.input(pick_run, inputs=tab.run, outputs=tab.run_outputs(), api_name="eval_run", show_progress="hidden")
    tab.write.click(write, inputs=[tab.run, *systems], outputs=tab.run_outputs(), api_name="eval_write_report")
    tab.clips.select(pick_row, outputs=tab.selected, show_progress="hidden", api_visibility="private").then(
        play, inputs=[tab.run, tab.selected], outputs=[tab.video, tab.clip_info], show_progress="hidden",
        api_visibility="private")
    tab.selected.submit(play, inputs=[tab.run, tab.selected], outputs=[tab.video, tab.clip_info],
                        api_name="eval_clip", show_progress="hidden")
    tab.send.click(h.as_admin(send, 1), inputs=[session, tab.run, *systems], outputs=tab.send_report,
                   api_name="eval_send_pairs")
    tab.compare.click(h.as_admin(compare, 2), inputs=[session, tab.run], outputs=[tab.compare_note, tab.compare_table],
                      api_name="eval_compare")
    blocks.load(h.visibility, outputs=eval_page, show_progress="hidden", api_visibility="private")
