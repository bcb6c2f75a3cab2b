"""The queue panel (shown on the Create tab): what runs, what waits, and a way to remove a job.

It reads the database, so it also shows jobs queued by an earlier run of the studio, by other
browsers, or resumed by the background thread. A timer refreshes it while the page is open.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from ..adapters import parse_id
from ..feedback import refuse, refusals
from ..formatting import QUEUE_HEADERS, queue_summary, queue_table
from ..services.context import StudioServices
from ..services.identity import person, require_creator

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

    def outputs(self) -> list[Any]:
        return [self.summary, self.table]


def snapshot(services: StudioServices, request: Any = None) -> tuple[str, list[list[Any]]]:
    """The queue as this viewer may see it: their jobs in full, others' only as places in line."""
    rows = services.runner.queue(viewer=None if request is None else person(services, request).viewer)
    return queue_summary(rows), queue_table(rows)


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
    timer = gr.Timer(REFRESH_SECONDS)
    return QueuePanel(summary, table, selected, remove, refresh, timer)


def wire(panel: QueuePanel, services: StudioServices) -> None:
    refresh = refresher(services)

    def pick(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return str(row[1]) if len(row) > 1 and str(row[1]).isdigit() else gr.skip()

    @refusals("Queue", outputs=len(panel.outputs()), taxonomy=services.taxonomy)
    def remove(job: str | int | None, request: gr.Request) -> tuple[str, list[list[Any]]]:
        job_id = parse_id(job)
        if job_id is None:
            refuse("Job #: click its row in the queue or type its number first.")
        gr.Info(services.runner.cancel(job_id, viewer=require_creator(services, request)))
        return snapshot(services, request)

    # The timer only reads the database; hidden progress keeps the table from flickering.
    panel.timer.tick(refresh, outputs=panel.outputs(), show_progress="hidden", api_visibility="private")
    panel.refresh.click(refresh, outputs=panel.outputs(), show_progress="hidden", api_name="queue")
    panel.table.select(pick, outputs=panel.selected, show_progress="hidden", api_visibility="private")
    panel.remove.click(remove, inputs=panel.selected, outputs=panel.outputs(), api_name="remove_job")
