"""Best of N, in the Create tab: N candidates of the form's request, ranked by a reward model.

The box sits under Generate. Its button reads the form exactly like Generate, then runs the
engine's `best_of_n` through the studio's one job runner: the N candidates are queued (each
checked once by the engine; a refusal is a toast naming the field and writes nothing) and run
one by one under the runner's GPU lock, so they never overlap another job or "Free memory". Every candidate goes through the studio like any
generation and is kept in the History with its stored reward scores; the box shows them ranked
(gallery and table: rank, seed, combined reward, one score per production dimension, P(failure)
and a "possible collapse" note) and the best one plays in the Create tab's player.

Reward models are the folders in ``<models>/reward`` (`RewardModel.save` writes them). With none
there the box says how to train one and stays disabled.

Cancel: the Create tab's Cancel button calls `cancel_run`, which sets this browser session's
token; the candidate being generated stops at its next step (recorded cancelled), the queued ones
are removed and the ones finished before stay in the History. Each candidate's job token also
watches its row, so the queue panel's "Remove" (or a cancel written by another process) stops it. On
ZeroGPU the GPU part runs in another process, so its arguments and results are plain data, and
there only that row watch (the queue's "Remove") reaches a running Best of N.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import gradio as gr

from engine.core.errors import EngineError, GenerationCancelled, InvalidRequest
from engine.core.generation import CancelToken
from engine.access import Viewer
from engine.core.requests import GenerationRequest

from ..adapters import ui_message
from ..feedback import Refusal, refuse, refusals
from ..formatting import (best_of_n_caption, best_of_n_details, best_of_n_dimensions, best_of_n_headers,
                          best_of_n_rows, best_of_n_status, candidate_status, is_preview, reward_found_note,
                          reward_missing_note, settings_markdown)
from ..services.identity import require_creator
from ..services.context import RewardEntry, StudioServices
from ..services.jobs import estimate_seconds, gpu_function
from . import queue as queue_panel

if TYPE_CHECKING:
    from engine.reward.types import BestOfNProgress, ScoredClip


log = logging.getLogger(__name__)

N_MIN, N_MAX, N_DEFAULT = 2, 8, 4
GALLERY_COLUMNS, GALLERY_HEIGHT = 8, 190  # N at most 8: one row of thumbnails
SOURCE = "best_of_n"  # the history rows' source, as the engine writes it
DEFAULT_DIMENSIONS = ("prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality",
                      "character_consistency")


class ResultView(Protocol):
    """What Best of N needs of the Create tab: its player, status line, seed, queue and form inputs."""

    video: Any
    clip_settings: Any
    noise_note: Any
    status: Any
    last_seed: Any
    queue: Any
    anyway: Any  # the "Generate anyway" box

    def inputs(self) -> list[Any]: ...


@dataclass
class BestOfNPanel:
    box: gr.Accordion
    n: gr.Slider
    reward: gr.Dropdown
    note: gr.Markdown
    run: gr.Button
    rescan: gr.Button
    ranking: gr.State  # [[history id, seed, reward], ...] best first: what a gallery click plays
    # The results, built by `build_results` below the form (hidden until a run has candidates to show).
    results: gr.Column | None = None
    gallery: gr.Gallery | None = None
    table: gr.Dataframe | None = None
    details: gr.Markdown | None = None

    def listing_outputs(self) -> list[Any]:
        return [self.reward, self.note, self.run]


# -- cancelling -----------------------------------------------------------------------------------
class RunRegistry:
    """The token of each browser session's Best-of-N run, so that session's Cancel can reach it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, CancelToken] = {}

    def start(self, session: str, token: CancelToken) -> None:
        with self._lock:
            if session in self._tokens:
                refuse("A Best of N of yours is already running; wait for it or press Cancel.")
            self._tokens[session] = token

    def finish(self, session: str, token: CancelToken) -> None:
        with self._lock:
            if self._tokens.get(session) is token:
                del self._tokens[session]

    def get(self, session: str) -> CancelToken | None:
        with self._lock:
            return self._tokens.get(session)

    def cancel(self, session: str) -> bool:
        with self._lock:
            token = self._tokens.get(session)
        if token is None:
            return False
        token.cancel()
        return True


RUNS = RunRegistry()


def cancel_run(request: gr.Request | None) -> str | None:
    """For the Create tab's Cancel: stop this session's Best of N (None when it has none)."""
    session = getattr(request, "session_hash", None) if request is not None else None
    if session and RUNS.cancel(session):
        return "Cancelling Best of N: it stops after the current step; finished candidates stay in the History."
    return None


# -- reward models and checks ---------------------------------------------------------------------------
def reward_listing(services: StudioServices) -> list[Any]:
    """Values for `BestOfNPanel.listing_outputs()`: the picker, the note, the button (off when none)."""
    entries = services.reward_models()
    folder = services.reward_dir
    if not entries:
        return [gr.update(choices=[], value=None, interactive=False), reward_missing_note(folder),
                gr.update(interactive=False)]
    choices = [(e.label, e.name) for e in entries]
    problems = [f"⚠ {e.name}: {e.problem}" for e in entries if e.problem]
    note = "\n\n".join([reward_found_note(len(entries), folder), *problems])
    return [gr.update(choices=choices, value=entries[0].name, interactive=True), note, gr.update(interactive=True)]


def check_count(n: Any) -> int:
    ok = isinstance(n, (int, float)) and not isinstance(n, bool) and float(n).is_integer()
    if not ok or not N_MIN <= int(n) <= N_MAX:
        refuse(f"N: must be a whole number from {N_MIN} to {N_MAX}, got {n!r}")
    return int(n)


def check_reward(services: StudioServices, name: Any) -> RewardEntry:
    entries = services.reward_models()
    if not entries:
        refuse(reward_missing_note(services.reward_dir).replace("**", ""))
    entry = next((e for e in entries if e.name == name), None)
    if entry is None:
        names = ", ".join(e.name for e in entries)
        refuse(f"Reward model: pick one of the list ({names}); got {name!r}")
    return entry


# -- build ------------------------------------------------------------------------------------------
def build(services: StudioServices) -> BestOfNPanel:
    """The Best of N box; its picker is filled from disk here and again on every page load."""
    picker, note, button = reward_listing(services)
    with gr.Accordion("Best of N · ranked by a reward model", open=False, elem_id="best-of-n") as box:
        with gr.Row(equal_height=True):
            n = gr.Slider(N_MIN, N_MAX, value=N_DEFAULT, step=1, label="N (candidates)", min_width=150, scale=2,
                          info="clips generated, then ranked", elem_id="best-of-n-count")
            reward = gr.Dropdown(picker.get("choices", []), value=picker.get("value"), label="Reward model",
                                 interactive=picker.get("interactive", False), min_width=200, scale=3,
                                 elem_id="best-of-n-reward", info="a checkpoint from `reward train`")
        note_md = gr.Markdown(note, elem_classes=["muted"], elem_id="best-of-n-note")
        with gr.Row():
            run = gr.Button("Generate best of N", variant="primary", interactive=button.get("interactive", False),
                            min_width=160, elem_id="best-of-n-run")
            rescan = gr.Button("Rescan reward models", size="sm", min_width=120, scale=0,
                               elem_id="best-of-n-rescan")
    return BestOfNPanel(box, n, reward, note_md, run, rescan, gr.State([]))


def build_results(panel: BestOfNPanel) -> None:
    """The ranking, full width under the Create form (ten columns do not fit beside it); hidden until a run."""
    with gr.Column(visible=False, elem_id="best-of-n-results") as results:
        gr.Markdown("### Best of N · candidates, best first\nClick a candidate to play it in the Clip player above.",
                    elem_id="best-of-n-title")
        gallery = gr.Gallery(show_label=False, columns=GALLERY_COLUMNS, height=GALLERY_HEIGHT, fit_columns=False,
                             allow_preview=False,
                             object_fit="cover", buttons=[], interactive=False, elem_id="best-of-n-gallery")
        table = gr.Dataframe(value=[], headers=best_of_n_headers(DEFAULT_DIMENSIONS), interactive=False,
                             wrap=True, show_label=False, elem_id="best-of-n-table")
        details = gr.Markdown("", elem_classes=["warning"], elem_id="best-of-n-details")
    panel.results, panel.gallery, panel.table, panel.details = results, gallery, table, details


# -- handlers -------------------------------------------------------------------------------------
def report_to(progress: gr.Progress, n: int) -> Callable[["BestOfNProgress"], None]:
    """The engine's progress of candidate k of n, as one bar over the whole run."""
    def report(p: "BestOfNProgress") -> None:
        inner = p.inner
        done: float = p.candidate - 1
        if p.stage == "generating" and inner is not None and inner.stage == "denoising" and inner.total:
            done += 0.9 * inner.step / inner.total  # the last tenth: decoding, saving, scoring
        elif p.stage == "scoring":
            done += 0.95
        progress(min(done / n, 1.0), desc=f"Best of {n}: {p.describe()}")
    return report


def duration(request_json: str, n: int, *_: Any, **__: Any) -> int:
    """ZeroGPU's quota for the whole run: N generations of this request and their scoring."""
    request = GenerationRequest.from_json(request_json)
    one = estimate_seconds(SimpleNamespace(model=request.model, request=request))  # type: ignore[arg-type]
    return int(min(30 + n * one, 1800))


def cancelled_outputs(message: str, model: str) -> list[Any]:
    """The run's outputs (see `BestOfNHandlers.outputs`) after a cancel: no clip, the ranking hidden."""
    return [None, "", gr.update(visible=is_preview(model)), f"■ {message}.", gr.skip(),
            gr.update(visible=False), [], {"headers": best_of_n_headers(DEFAULT_DIMENSIONS), "data": []},
            "", []]


class BestOfNHandlers:
    """The box's event handlers; `outputs` names what `start` returns, in order."""

    def __init__(self, panel: BestOfNPanel, tab: ResultView, services: StudioServices,
                 validate: Callable[[Sequence[Any]], GenerationRequest]) -> None:
        self.panel, self.tab, self.services, self.validate = panel, tab, services, validate
        self.tax = services.taxonomy
        self.history = services.studio.history
        self.outputs = [tab.video, tab.clip_settings, tab.noise_note, tab.status, tab.last_seed, panel.results,
                        panel.gallery, panel.table, panel.details, panel.ranking]
        self.run_on_gpu = gpu_function(self.on_gpu, duration)

    def listing(self) -> list[Any]:
        return reward_listing(self.services)

    def on_gpu(self, request_json: str, n: int, reward_name: str, key: str, viewer: Viewer,
               progress: gr.Progress) -> list[Any]:
        """The GPU part, with plain arguments and results (ZeroGPU runs it in another process)."""
        from engine.reward.best_of_n import best_of_n  # torch: imported by the first run, not by the page

        request = GenerationRequest.from_json(request_json)
        # Another process (ZeroGPU) has its own token; each candidate's job token still watches its row.
        token = RUNS.get(key) or CancelToken()
        started = time.perf_counter()
        try:
            progress(0.0, desc=f"Best of {n}: loading the reward model…")
            try:
                model = self.services.load_reward_model(reward_name)
            except (EngineError, OSError, RuntimeError) as exc:
                reason = exc.reason if isinstance(exc, InvalidRequest) else str(exc)
                refuse(f"Reward model: {reason}")
            # The job runner queues the N candidates (each checked once) and runs them under its GPU lock.
            ranked = best_of_n(self.services.runner, request, n, model, progress=report_to(progress, n),
                               cancel=token, viewer=viewer)
        except GenerationCancelled as exc:
            gr.Info("Best of N cancelled.")
            return cancelled_outputs(str(exc), request.model)
        except EngineError as exc:
            refuse(ui_message(exc, self.tax), "Cannot generate")
        return self.ranked_outputs(ranked, time.perf_counter() - started)

    def start(self, session: gr.Request, progress: gr.Progress = gr.Progress(), *args: Any) -> list[Any]:
        n_raw, reward_name, *values, anyway = args
        n = check_count(n_raw)
        entry = check_reward(self.services, reward_name)
        # types only: the engine checks the rest when the candidates are queued
        request = replace(self.validate(values), allow_soft_contradictions=bool(anyway))
        viewer = require_creator(self.services, session)
        token = CancelToken()
        key = getattr(session, "session_hash", None) or f"anonymous-{id(token)}"
        RUNS.start(key, token)
        try:
            return self.run_on_gpu(request.to_json(), n, entry.name, key, viewer, progress)
        except (gr.Error, Refusal, EngineError):
            raise
        except Exception as exc:  # noqa: BLE001 - the failed candidate is recorded; the app keeps running
            log.exception("Best of N failed")
            refuse(f"{type(exc).__name__}: {exc}", "Best of N failed")
        finally:
            RUNS.finish(key, token)

    def ranked_outputs(self, ranked: list["ScoredClip"], seconds: float) -> list[Any]:
        """The run's outputs (see `outputs`): the best clip in the player, the ranking shown."""
        best = ranked[0]
        record = self.history.get(best.history_id)
        gallery = []
        for clip in ranked:
            poster = self.history.poster_path(clip.record)
            gallery.append((str(poster if poster is not None and poster.is_file() else clip.video),
                            best_of_n_caption(clip)))
        table = {"headers": best_of_n_headers(best_of_n_dimensions(ranked)), "data": best_of_n_rows(ranked)}
        ranking = [[c.history_id, c.seed, c.score.reward] for c in ranked]
        return [str(best.video), settings_markdown(record, self.tax), gr.update(visible=is_preview(record.model)),
                best_of_n_status(ranked, seconds), best.seed, gr.update(visible=True), gallery, table,
                best_of_n_details(ranked), ranking]

    def show_candidate(self, ranking: list[list[Any]] | None, evt: gr.SelectData) -> tuple[Any, str, Any, str]:
        """A gallery click: that candidate in the player (video, settings, noise note, status)."""
        rows = ranking or []
        if not isinstance(evt.index, int) or not 0 <= evt.index < len(rows):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        history_id, seed, reward = rows[evt.index]
        record = self.history.get(int(history_id))
        video = self.history.video_path(record)
        if video is None or not video.is_file():
            refuse(f"Entry #{history_id} has no video any more (deleted from the History?).")
        return (str(video), settings_markdown(record, self.tax), gr.update(visible=is_preview(record.model)),
                candidate_status(evt.index + 1, len(rows), int(history_id), int(seed), float(reward)))


# -- wire -------------------------------------------------------------------------------------------
def wire(panel: BestOfNPanel, tab: ResultView, services: StudioServices,
         validate: Callable[[Sequence[Any]], GenerationRequest]) -> None:
    """`validate` is the Create tab's own check (form -> request; a refusal naming the field)."""
    if panel.results is None or panel.gallery is None or panel.table is None or panel.details is None:
        raise ValueError("call build_results(panel) while building the page, before wire")
    h = BestOfNHandlers(panel, tab, services, validate)
    tax = services.taxonomy
    start = refusals("Best of N", outputs=len(h.outputs), taxonomy=tax)(h.start)
    show_candidate = refusals("Best of N", outputs=4, taxonomy=tax)(h.show_candidate)
    gr.on(None, h.listing, outputs=panel.listing_outputs(), show_progress="hidden", api_visibility="private")
    panel.rescan.click(h.listing, outputs=panel.listing_outputs(), api_name="best_of_n_models",
                       show_progress="hidden")
    ran = panel.run.click(start, inputs=[panel.n, panel.reward, *tab.inputs(), tab.anyway], outputs=h.outputs,
                          api_name="best_of_n", concurrency_id="best_of_n", concurrency_limit=4,
                          show_progress_on=[tab.video, panel.gallery])
    ran.then(queue_panel.refresher(services), outputs=tab.queue.outputs(), show_progress="hidden",
             api_visibility="private")
    panel.gallery.select(show_candidate, inputs=panel.ranking,
                         outputs=[tab.video, tab.clip_settings, tab.noise_note, tab.status],
                         show_progress="hidden", api_visibility="private")
