"""Create tab and queue panel: the running job's live preview, a small animated picture of the clip forming.

The job's process writes it (engine/core/previews.py) into the media store every few steps, so a
`--no-worker` front-end shows a worker's preview too. Here a timer reads the file: on the Create tab
every second while this session has a job open (Generate starts it, the tick stops it once none is),
in the queue panel on the panel's own timer, for the running job the viewer may see.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from engine.core.errors import EngineError

from ..services.context import StudioServices
from ..services.identity import person

TICK_SECONDS = 1.0
RECENT_JOBS = 5  # a session's newest jobs looked at for a preview (the others have ended long ago)
LABEL = "Live preview · the clip forming"


@dataclass
class LivePreviewBox:
    image: gr.Image
    timer: gr.Timer


def image(elem_id: str, label: str = LABEL) -> gr.Image:
    """A small picture that stays hidden until there is a preview to show."""
    return gr.Image(None, label=label, type="filepath", interactive=False, visible=False, height=180,
                    buttons=[], elem_id=elem_id, elem_classes=["live-preview"])


def build() -> LivePreviewBox:
    """The Create tab's preview (placed under the status line) and its timer, idle until Generate."""
    return LivePreviewBox(image("live-preview"), gr.Timer(TICK_SECONDS, active=False))


def session_preview(services: StudioServices, session_jobs: list[int] | None) -> tuple[Path | None, bool]:
    """(the preview of this session's newest job that has one, whether any of its recent jobs is open)."""
    jobs = list(session_jobs or [])[-RECENT_JOBS:]
    for job_id in reversed(jobs):
        path = services.runner.preview_of(job_id)
        if path is not None:
            return path, True
    history = services.studio.history
    try:
        return None, any(not history.get(job_id).is_finished for job_id in jobs)
    except EngineError:
        return None, False


def _shown(path: Path | None) -> Any:
    # A file read between the writer's rename and the job's end may be gone a moment later: skip it then.
    if path is None:
        return gr.update(value=None, visible=False)
    return gr.update(value=str(path), visible=True) if path.is_file() else gr.skip()


def wire(box: LivePreviewBox, services: StudioServices, generate: gr.Button, session_jobs: gr.State,
         ran: Any) -> None:
    def tick(jobs: list[int] | None) -> tuple[Any, Any]:
        path, open_jobs = session_preview(services, jobs)
        return _shown(path), gr.Timer(active=open_jobs)

    generate.click(lambda: gr.Timer(active=True), outputs=box.timer, queue=False, show_progress="hidden",
                   api_visibility="private")
    box.timer.tick(tick, inputs=session_jobs, outputs=[box.image, box.timer], show_progress="hidden",
                   api_visibility="private")
    # When a run ends the file is gone: hide it now (and stop the timer unless another job is open).
    ran.then(tick, inputs=session_jobs, outputs=[box.image, box.timer], show_progress="hidden",
             api_visibility="private")


def running_preview(services: StudioServices, request: Any) -> Path | None:
    """The preview of a running job this viewer may see (their own, or any in a shared studio)."""
    try:
        viewer = person(services, request).viewer
        rows = services.runner.queue(limit=20, viewer=viewer)
    except EngineError:
        return None
    for row in rows:
        if row.position is None and row.mine:
            path = services.runner.preview_of(row.job_id)
            if path is not None:
                return path
    return None


def wire_queue(preview: gr.Image, timer: gr.Timer, services: StudioServices) -> None:
    def tick(request: gr.Request) -> Any:
        return _shown(running_preview(services, request))

    timer.tick(tick, outputs=preview, show_progress="hidden", api_visibility="private")
