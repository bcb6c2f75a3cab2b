"""The queue panel (shown on the Create tab): what runs, what waits, and how to steer it.

It reads the database, so it also shows jobs queued by an earlier run of the studio, by other
browsers, or resumed by the background thread. A timer refreshes it while the page is open.
Steering (move up/down/top, pause/resume, duplicate, apply the form to a queued job) goes through
the engine's `QueueSteering`, so a move made here holds for every worker; a refusal (another
visitor's job, a job that already started, a bad edit) is a toast and the form stays as it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gradio as gr

from engine.core.requests import GenerationRequest
from engine.steering import QueueSteering

from ..adapters import parse_id
from ..feedback import refuse, refusals
from ..formatting import QUEUE_HEADERS, queue_summary, queue_table
from ..services.context import StudioServices
from ..services.identity import person, require_creator
from . import create_preview

REFRESH_SECONDS = 2.0
# The page is built once for every visitor: its first table shows nobody's jobs in full.
_NOBODY = object()


@dataclass
class QueuePanel:
    summary: gr.Markdown
    table: gr.Dataframe
    selected: gr.Textbox
    remove: gr.Button
    refresh: gr.Button
    timer: gr.Timer
    # Steering: reorder, duplicate, apply the form to a queued job, pause or resume the whole queue.
    moves: dict[str, gr.Button] = field(default_factory=dict)
    duplicate: gr.Button | None = None
    apply_form: gr.Button | None = None
    pause: gr.Button | None = None
    resume: gr.Button | None = None
    preview: gr.Image | None = None  # the running job's live preview (create_preview)

    def outputs(self) -> list[Any]:
        return [self.summary, self.table]


def snapshot(services: StudioServices, request: Any = None) -> tuple[str, list[list[Any]]]:
    """The queue as this viewer may see it: their jobs in full, others' only as places in line."""
    rows = services.runner.queue(viewer=None if request is None else person(services, request).viewer)
    paused = services.runner.queue_store.state().paused
    return queue_summary(rows) + (" · **paused**: no job starts until it is resumed" if paused else ""), \
        queue_table(rows)


def refresher(services: StudioServices) -> Callable[[gr.Request], tuple[str, list[list[Any]]]]:
    """A handler that redraws the queue for whoever triggered it (for chained events)."""
    def refresh(request: gr.Request) -> tuple[str, list[list[Any]]]:
        return snapshot(services, request)
    return refresh


def build(services: StudioServices) -> QueuePanel:
    summary_text, rows = snapshot(services, request=_NOBODY)
    # Folded: the Generate status and progress follow your own job; open it to see every job.
    with gr.Accordion("Queue", open=False, elem_id="queue-panel"):
        summary = gr.Markdown(summary_text, elem_id="queue-summary")
        preview = create_preview.image("queue-preview", label="Running job: live preview")
        table = gr.Dataframe(
            value=rows, headers=list(QUEUE_HEADERS), interactive=False, wrap=True, max_height=260,
            column_widths=["14%", "10%", "18%", "18%", "40%"], elem_id="queue-table", show_label=False,
        )
        with gr.Row(elem_id="queue-actions"):
            selected = gr.Textbox(label="Job #", placeholder="click a row", max_lines=1, min_width=110, scale=1,
                                  elem_id="queue-job")
            with gr.Column(scale=2, min_width=180):
                remove = gr.Button("Remove / cancel job", size="sm", elem_id="queue-remove")
                refresh = gr.Button("Refresh", size="sm", elem_id="queue-refresh")
        with gr.Row(elem_id="queue-steer"):
            moves = {where: gr.Button(label, size="sm", min_width=70, elem_id=f"queue-move-{where}")
                     for where, label in (("up", "↑ Up"), ("down", "↓ Down"), ("top", "⤒ Top"))}
            duplicate = gr.Button("Duplicate (new seed)", size="sm", elem_id="queue-duplicate")
            apply_form = gr.Button("Apply form to job", size="sm", elem_id="queue-edit")
        with gr.Row(elem_id="queue-pause-row"):
            pause = gr.Button("Pause queue", size="sm", elem_id="queue-pause")
            resume = gr.Button("Resume queue", size="sm", elem_id="queue-resume")
    timer = gr.Timer(REFRESH_SECONDS)
    return QueuePanel(summary, table, selected, remove, refresh, timer, moves, duplicate, apply_form, pause, resume,
                      preview)


def wire(panel: QueuePanel, services: StudioServices, form: Sequence[Any] = (),
         validated: Callable[[Sequence[Any]], GenerationRequest] | None = None) -> None:
    """Wire the panel; `form` and `validated` (the Create form and its check) enable "Apply form to job"."""
    refresh = refresher(services)

    def pick(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return str(row[1]) if len(row) > 1 and str(row[1]).isdigit() else gr.skip()

    @refusals("Queue", outputs=len(panel.outputs()), taxonomy=services.taxonomy)
    def remove(job: str | int | None, request: gr.Request) -> tuple[str, list[list[Any]]]:
        gr.Info(services.runner.cancel(_job(job), viewer=require_creator(services, request)))
        return snapshot(services, request)

    # The timer only reads the database; hidden progress keeps the table from flickering.
    panel.timer.tick(refresh, outputs=panel.outputs(), show_progress="hidden", api_visibility="private")
    panel.refresh.click(refresh, outputs=panel.outputs(), show_progress="hidden", api_name="queue")
    panel.table.select(pick, outputs=panel.selected, show_progress="hidden", api_visibility="private")
    panel.remove.click(remove, inputs=panel.selected, outputs=panel.outputs(), api_name="remove_job")
    _wire_steering(panel, services, QueueSteering(services.runner), list(form), validated)
    if panel.preview is not None:
        create_preview.wire_queue(panel.preview, panel.timer, services)


def _job(value: str | int | None) -> int:
    job_id = parse_id(value)
    if job_id is None:
        refuse("Job #: click its row in the queue or type its number first.")
    return job_id


def _wire_steering(panel: QueuePanel, services: StudioServices, steer: QueueSteering, form: list[Any],
                   validated: Callable[[Sequence[Any]], GenerationRequest] | None) -> None:
    outputs, tax = panel.outputs(), services.taxonomy

    def mover(where: str) -> Callable[..., tuple[str, list[list[Any]]]]:
        @refusals("Queue", outputs=len(outputs), taxonomy=tax)
        def move(job: str | int | None, request: gr.Request) -> tuple[str, list[list[Any]]]:
            gr.Info(steer.move(_job(job), where, require_creator(services, request)))
            return snapshot(services, request)
        return move

    @refusals("Queue", outputs=len(outputs), taxonomy=tax)
    def duplicate(job: str | int | None, request: gr.Request) -> tuple[str, list[list[Any]]]:
        source = _job(job)
        new = steer.duplicate(source, require_creator(services, request))
        gr.Info(f"Job #{new} queued: a copy of #{source} with seed {services.studio.history.get(new).seed}.")
        return snapshot(services, request)

    @refusals("Queue", outputs=len(outputs), taxonomy=tax)
    def pause(request: gr.Request) -> tuple[str, list[list[Any]]]:
        gr.Info(steer.pause(require_creator(services, request)))
        return snapshot(services, request)

    @refusals("Queue", outputs=len(outputs), taxonomy=tax)
    def resume(request: gr.Request) -> tuple[str, list[list[Any]]]:
        gr.Info(steer.resume(require_creator(services, request)))
        return snapshot(services, request)

    @refusals("Edit job", outputs=len(outputs), taxonomy=tax)
    def apply_form(job: str | int | None, request: gr.Request, *values: Any) -> tuple[str, list[list[Any]]]:
        if validated is None:
            refuse("Editing needs the Create form.")
        job_id = _job(job)
        record = steer.edit(job_id, validated(values), require_creator(services, request))
        gr.Info(f"Job #{job_id} now runs with the form's settings (seed {record.seed}).")
        return snapshot(services, request)

    for where, button in panel.moves.items():
        button.click(mover(where), inputs=panel.selected, outputs=outputs, show_progress="hidden",
                     api_name=f"move_job_{where}")
    if panel.duplicate is not None:
        panel.duplicate.click(duplicate, inputs=panel.selected, outputs=outputs, api_name="duplicate_job")
    if panel.pause is not None and panel.resume is not None:
        panel.pause.click(pause, outputs=outputs, api_name="pause_queue")
        panel.resume.click(resume, outputs=outputs, api_name="resume_queue")
    if panel.apply_form is not None and form:
        panel.apply_form.click(apply_form, inputs=[panel.selected, *form], outputs=outputs, api_name="edit_job")
