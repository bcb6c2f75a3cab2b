"""Create tab: Generate, the job's run on the "gpu" slot, Cancel and "Reuse last seed".

Generate is two events: a fast one that checks and queues the job (bad input: a toast naming the
field, no row written), then a chained one on the single "gpu" concurrency slot that runs it
through the JobRunner and streams progress.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Protocol, Sequence

import gradio as gr

from engine.core.errors import EngineError, GenerationCancelled
from engine.core.generation import Progress
from engine.core.requests import GenerationRequest

from ..adapters import ui_message
from ..feedback import Refusal, refuse, refusals, warn
from ..formatting import is_preview, settings_markdown
from ..services.context import StudioServices
from ..services.identity import require_creator
from ..services.jobs import JobOutcome, estimate_seconds, gpu_function
from . import best_of_n as best_of_n_box
from . import queue as queue_panel

log = logging.getLogger(__name__)
MAX_GPU_SECONDS = 300  # what one ZeroGPU call asks for at most (a single job's own cap), however long the line


class RunControls(Protocol):
    """What these events need of the Create tab (a Protocol: importing create here would be a cycle)."""

    generate: gr.Button
    anyway: gr.Checkbox | None
    cancel: gr.Button
    reuse_seed: gr.Button
    random_seed: gr.Checkbox
    seed: gr.Number
    job_id: gr.Number
    session_jobs: gr.State
    last_seed: gr.State
    status: gr.Markdown
    video: gr.Video
    clip_settings: gr.Markdown
    noise_note: gr.Markdown
    queue: queue_panel.QueuePanel


def wire(tab: RunControls, services: StudioServices, inputs: list[Any],
         validated: Callable[[Sequence[Any]], GenerationRequest]) -> Any:
    """Generate / run / cancel / reuse seed; `validated` turns the form's values into a request.
    Returns the run event, for what should follow each job (the recent-results strip)."""
    tax = services.taxonomy
    runner = services.runner
    history = services.studio.history

    def submit(session_jobs: list[int] | None, who: gr.Request, *values: Any) -> tuple[Any, Any, Any, Any]:
        *form, anyway = values  # "Generate anyway" comes last, so API callers may leave it out
        try:
            request = replace(validated(form), allow_soft_contradictions=bool(anyway))
            # Live previews on: the creator watches this job (a studio setting can turn them off).
            job_id = runner.submit(request, viewer=require_creator(services, who), preview=True)
        except (Refusal, EngineError) as exc:
            # A toast naming the field; the form, the clip and the status stay. The job number is
            # cleared so the chained run (which always follows) knows there is nothing to run.
            message = exc.message if isinstance(exc, Refusal) else ui_message(exc, tax)
            warn(message, "Cannot generate")
            return None, gr.skip(), gr.skip(), gr.skip()
        prepared = runner.prepared(job_id)
        seed = prepared.request.seed if prepared is not None else history.get(job_id).seed
        position = history.queue_positions().get(job_id)
        where = f"position {position} in the queue" if position else "starting"
        return job_id, [*(session_jobs or []), job_id], seed, f"Job #{job_id} queued ({where}, seed {seed})."

    @refusals("Generate", outputs=4, taxonomy=tax)
    def run(job_id: float | None, who: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple[Any, Any, Any, Any]:
        if job_id is None:  # the submit was refused (its toast said why) or nothing was submitted
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        jid = int(job_id)
        # the job number comes from the browser: it must be this viewer's
        services.access.check(require_creator(services, who), history.get(jid), "run")

        def report(p: Progress) -> None:
            if p.stage == "denoising":
                progress((p.step, p.total), desc=f"Job #{jid}: {p.describe()}", unit="steps")
            else:
                progress(None, desc=f"Job #{jid}: {p.describe()}")

        try:
            outcome = runner.run(jid, progress=report, follow=True,
                                 on_wait=lambda: progress(None, desc=f"Job #{jid}: waiting for the GPU…"))
        except GenerationCancelled as exc:
            gr.Info(f"Job #{jid} cancelled.")
            return None, "", gr.update(visible=False), f"Job #{jid} cancelled: {exc}"
        except EngineError as exc:
            return failed(jid, ui_message(exc, tax))
        except Exception as exc:  # noqa: BLE001 - recorded as failed by the studio; the app keeps running
            log.exception("job #%s failed", jid)
            return failed(jid, f"{type(exc).__name__}: {exc}")
        return show_outcome(outcome)

    def failed(jid: int, message: str) -> tuple[Any, Any, Any, str]:
        """A failed job: a toast and the status line say why; the last clip stays on screen."""
        warn(message, f"Job #{jid} failed")
        return gr.skip(), gr.skip(), gr.skip(), f"Job #{jid} failed: {message}"

    def show_outcome(outcome: JobOutcome) -> tuple[Any, str, Any, str]:
        record = outcome.record
        noise = gr.update(visible=is_preview(record.model))
        if record.status == "done":
            took = f" in {record.timings['total_s']:.1f} s" if "total_s" in record.timings else ""
            return (str(history.video_path(record)), settings_markdown(record, tax), noise,
                    f"✓ Job #{record.id} done{took} (seed {record.seed}).")
        if record.status in ("failed", "cancelled"):
            return None, settings_markdown(record, tax), noise, f"Job #{record.id} {record.status}: {record.error}"
        return None, "", noise, f"Job #{record.id} is {record.status} elsewhere; see the queue."

    def duration(job_id: float | None, *_: Any, **__: Any) -> int:
        try:
            # The run starts with the jobs that stand ahead of this one in the queue (engine/runner.py).
            mine = int(job_id or 0)
            positions = history.queue_positions()
            ahead = [j for j, p in positions.items() if p <= positions.get(mine, 0)] or [mine]
            return min(sum(estimate_seconds(history.get(j)) for j in ahead), MAX_GPU_SECONDS)
        except (EngineError, ValueError):
            return 120

    @refusals("Cancel", outputs=1, taxonomy=tax)
    def cancel(session_jobs: list[int] | None, request: gr.Request) -> Any:
        # The job the status line names: this session's newest job that has not ended (the last
        # Generate click), not whichever of its jobs holds the GPU.
        running = runner.running_job()
        positions = history.queue_positions()
        open_jobs = [j for j in (session_jobs or []) if j in positions or j == running]
        target = max(open_jobs) if open_jobs else None
        if target is None:
            stopping = best_of_n_box.cancel_run(request)  # this session's Best of N, running or waiting
            if stopping is not None:
                gr.Info(stopping)
                return stopping
            gr.Info("Nothing of yours is queued or running.")
            return gr.skip()
        message = runner.cancel(target, viewer=require_creator(services, request))
        gr.Info(message)
        return message

    @refusals("Seed", outputs=2, taxonomy=tax)
    def reuse_last(last_seed: int | None, who: gr.Request) -> tuple[bool, int]:
        if last_seed is None:
            owners = services.access.owners_filter(require_creator(services, who))
            page = history.list(owners=owners, limit=1)
            last_seed = page.items[0].seed if page.items else None
        if last_seed is None:
            refuse("Seed: no clip has been generated yet, so there is no seed to reuse.")
        return False, last_seed

    tab.reuse_seed.click(reuse_last, inputs=tab.last_seed, outputs=[tab.random_seed, tab.seed], api_name="reuse_seed")

    # Several clicks queue several jobs ("multiple"); each run waits for the one "gpu" slot.
    submitted = tab.generate.click(
        submit, inputs=[tab.session_jobs, *inputs, tab.anyway], outputs=[tab.job_id, tab.session_jobs, tab.last_seed, tab.status],
        api_name="submit", trigger_mode="multiple", show_progress="hidden",
        # One at a time: each submit reads and extends this session's job list (gr.State).
        concurrency_limit=1, concurrency_id="submit",
    )
    ran = submitted.success(
        gpu_function(run, duration), inputs=tab.job_id,
        outputs=[tab.video, tab.clip_settings, tab.noise_note, tab.status], api_name="run_job",
        concurrency_limit=1, concurrency_id="gpu", trigger_mode="multiple", show_progress_on=[tab.video],
    )
    for event in (submitted, ran):
        event.then(queue_panel.refresher(services), outputs=tab.queue.outputs(), show_progress="hidden",
                   api_visibility="private")
    tab.cancel.click(cancel, inputs=tab.session_jobs, outputs=tab.status, api_name="cancel")
    queue_panel.wire(tab.queue, services, inputs, validated)
    return ran
