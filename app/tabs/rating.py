"""Rate tab: animators judge blind pairs of clips, per production dimension, and mark deformations.

Sign-in: the studio's own login when launched with `--auth raters` (then every handler acts as
`request.username`'s account, whatever the session's state says, so replaying another session's
hash acts as oneself), or an in-tab form (name + password -> `RatingService.authenticate`) whose
account is kept in `gr.State` (server side) with the studio login it was made under. Every
handler re-reads the account (`rating_view.session_rater`), so a disabled account stops at its
next click.

The players are plain HTML (`rating_view.player_html`) over the serving's own copies of the clips
(`engine.rating.playback.ServedCopies`), driven by `app/rating.js`, which also turns keys into
clicks on the radios and buttons below and reports time spent and replays as running totals
with every save (`TelemetryLedger` turns them into what the service adds up; the service keeps
them only as a hint, the server's own time is what counts). Drafts save on every change and every
few seconds; Submit stores the answer, then shows which model made which clip. The admin panel is
a sub-tab shown to admins only; the service refuses admin actions to anyone else regardless.
Launch options, the media-file guard and what a rater sees of the rest: `rating_help`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.core.errors import EngineError
from engine.rating.types import DIMENSIONS

from ..services.context import StudioServices
from ..services.rating_view import (CHOICE_OPTIONS, DIMENSION_TITLES, INTENT_OPTIONS, KIND_OPTIONS, SCORE_OPTIONS,
                                    STRENGTH_OPTIONS, player_html, rubric_markdown)
from ..feedback import refusals
from . import rating_admin
from .rating_handlers import MARK_DEFAULTS, RatingHandlers, pick_task
from .rating_marks import add_mark, remove_marks
from .rating_help import HELP, css_text, head_html, launch_kwargs, studio_view

__all__ = ["RatingTab", "build", "css_text", "head_html", "launch_kwargs", "studio_view", "wire"]

log = logging.getLogger(__name__)

AUTOSAVE_SECONDS = 15.0
# Every save event's first input is the hidden telemetry box, filled by rating.js at click time.
TAKE_TELEMETRY = "(...args) => { args[0] = window.amxRate ? window.amxRate.telemetry() : ''; return args; }"
MY_HEADERS = ["Task", "Status", "When", "Time", "Replays", "Answers", "Marks"]


@dataclass
class RatingTab:
    session: gr.State  # {"id", "name"} of the signed-in rater, or None
    pair: gr.State  # {"id", "frames", "status"} of the pair on screen, or None
    marks: gr.State  # the pair's deformation marks (plain dicts, frames from 0)
    telemetry: gr.Textbox  # hidden; rating.js writes the running totals into each save
    signin_box: gr.Column
    name: gr.Textbox
    password: gr.Textbox
    sign_in: gr.Button
    signin_note: gr.Markdown
    whoami_row: gr.Row
    whoami: gr.Markdown
    sign_out: gr.Button
    subtabs: gr.Tabs
    admin_tab: gr.Tab
    work: gr.Column
    done_box: gr.Column
    done: gr.Markdown
    check_again: gr.Button
    progress: gr.Markdown
    save_note: gr.Markdown
    prompt: gr.Markdown
    player: gr.HTML
    reveal_box: gr.Column
    reveal: gr.HTML
    next: gr.Button
    rubric: gr.Accordion
    votes: list[gr.Radio]  # DIMENSIONS order; choice, strength, score A, score B for each
    mark_clip: gr.Radio
    mark_start: gr.Number
    mark_end: gr.Number
    mark_in: gr.Button
    mark_out: gr.Button
    mark_kind: gr.Radio
    mark_intent: gr.Radio
    mark_note: gr.Textbox
    add_mark: gr.Button
    mark_list: gr.CheckboxGroup
    remove_marks: gr.Button
    submit: gr.Button
    skip: gr.Button
    mine: gr.Dataframe
    open_id: gr.Textbox
    open_task: gr.Button
    mine_refresh: gr.Button
    timer: gr.Timer
    admin: rating_admin.AdminPanel

    def save_inputs(self) -> list[Any]:
        return [self.telemetry, self.session, self.pair, self.marks, *self.votes]

    def access_outputs(self) -> list[Any]:
        return [self.session, self.signin_box, self.whoami_row, self.whoami, self.subtabs, self.admin_tab,
                self.signin_note]

    def pair_outputs(self) -> list[Any]:
        return [self.pair, self.marks, self.player, self.prompt, self.progress, self.work, self.done_box, self.done,
                self.reveal_box, self.submit, self.skip, self.save_note, self.mark_list, self.mark_start,
                self.mark_end, self.mark_note, self.mark_clip, self.mark_kind, self.mark_intent, *self.votes]



def _rubric_markdown(services: StudioServices) -> str:
    try:
        return rubric_markdown(services.rating.rubric())
    except EngineError as exc:  # a broken rubric file must not take the studio down
        return f"The rubric could not be read: {exc}"


def _build_signin() -> dict[str, Any]:
    with gr.Column(elem_id="rate-signin") as signin_box:
        gr.Markdown("### Sign in to rate\nUse the rater account an admin made for you. Pairs are blind: which model "
                    "made which clip is shown after you submit.")
        name = gr.Textbox(label="Rater name", max_lines=1, elem_id="rate-name")
        password = gr.Textbox(label="Password", type="password", max_lines=1,
                              elem_id="rate-password")
        sign_in = gr.Button("Sign in", variant="primary", elem_id="rate-sign-in")
        signin_note = gr.Markdown("", elem_classes=["muted"], elem_id="rate-signin-note")
    with gr.Row(visible=False, elem_id="rate-whoami", equal_height=True) as whoami_row:
        whoami = gr.Markdown("", scale=4)
        sign_out = gr.Button("Sign out", size="sm", scale=0, min_width=100, elem_id="rate-sign-out")
    return dict(signin_box=signin_box, name=name, password=password, sign_in=sign_in, signin_note=signin_note,
                whoami_row=whoami_row, whoami=whoami, sign_out=sign_out)


def _build_votes() -> list[gr.Radio]:
    """Choice, strength, score A and score B for each dimension, in DIMENSIONS order."""
    votes: list[gr.Radio] = []
    for n, dim in enumerate(DIMENSIONS, 1):
        with gr.Row(elem_id=f"rate-row-{dim}", elem_classes=["amx-dim-row"]):
            votes.append(gr.Radio(list(CHOICE_OPTIONS), value=None, label=f"{n} · {DIMENSION_TITLES[dim]}",
                                  elem_id=f"rate-choice-{dim}", elem_classes=["amx-choice"],
                                  min_width=240, scale=2))
            votes.append(gr.Radio(list(STRENGTH_OPTIONS), value=0, label="Strength (A/B)",
                                  elem_id=f"rate-strength-{dim}", min_width=180, scale=1))
            votes.append(gr.Radio(list(SCORE_OPTIONS), value=0, label="Score A (1–5)",
                                  elem_id=f"rate-score-a-{dim}", min_width=190, scale=2))
            votes.append(gr.Radio(list(SCORE_OPTIONS), value=0, label="Score B (1–5)",
                                  elem_id=f"rate-score-b-{dim}", min_width=190, scale=2))
    return votes


def _build_marks() -> dict[str, Any]:
    with gr.Column(elem_id="rate-marks-box", elem_classes=["amx-marks"]):
        gr.Markdown("**Deformations** · mark the frames where one happens, on the clip where it happens. "
                    "Smears or impact frames drawn on purpose are *art*; collapse is a *failure*.",
                    elem_classes=["muted"])
        with gr.Row(elem_classes=["amx-mark-range"]):
            mark_clip = gr.Radio(["A", "B"], value=MARK_DEFAULTS[0], label="Clip (Shift+A/B)", elem_id="rate-mark-clip",
                                 min_width=130, scale=1)
            with gr.Column(min_width=120, scale=1):
                mark_start = gr.Number(None, label="Start frame", placeholder="press I", precision=0,
                                       minimum=1, elem_id="rate-mark-start")
                mark_in = gr.Button("Mark in (I)", size="sm", elem_id="rate-mark-in")
            with gr.Column(min_width=120, scale=1):
                mark_end = gr.Number(None, label="End frame", placeholder="press O", precision=0,
                                     minimum=1, elem_id="rate-mark-end")
                mark_out = gr.Button("Mark out (O)", size="sm", elem_id="rate-mark-out")
            mark_intent = gr.Radio(list(INTENT_OPTIONS), value=MARK_DEFAULTS[2], label="Intent (N)",
                                   elem_id="rate-mark-intent", min_width=230, scale=2)
        mark_kind = gr.Radio(list(KIND_OPTIONS), value=MARK_DEFAULTS[1], label="Kind (K)", elem_id="rate-mark-kind")
        with gr.Row(elem_classes=["amx-mark-add"]):
            mark_note = gr.Textbox(label="Note (optional)", max_lines=1, min_width=200, scale=3,
                                   elem_id="rate-mark-note")
            add_mark = gr.Button("Add mark (M)", size="sm", variant="secondary", min_width=120, scale=1,
                                 elem_id="rate-add-mark")
        with gr.Row(elem_classes=["amx-mark-list-row"]):
            mark_list = gr.CheckboxGroup([], value=[], label="Marks on this pair (tick to remove)",
                                         elem_id="rate-mark-list", scale=4)
            remove_marks = gr.Button("Remove ticked", size="sm", min_width=120, scale=1,
                                     elem_id="rate-remove-marks")
    return dict(mark_clip=mark_clip, mark_start=mark_start, mark_end=mark_end, mark_in=mark_in, mark_out=mark_out,
                mark_kind=mark_kind, mark_intent=mark_intent, mark_note=mark_note, add_mark=add_mark,
                mark_list=mark_list, remove_marks=remove_marks)


def _build_work(services: StudioServices) -> dict[str, Any]:
    """The pair on screen: progress, reveal, players, rubric, votes, marks, submit and skip."""
    with gr.Column(visible=False, elem_id="rate-work") as work:
        with gr.Row(elem_id="rate-topline"):
            progress = gr.Markdown("", elem_id="rate-progress", scale=3)
            save_note = gr.Markdown("", elem_classes=["muted"], elem_id="rate-save-note", scale=2)
        # The reveal sits above the players, so it is on screen when Enter submits from the keyboard.
        with gr.Row(visible=False, elem_id="rate-reveal", equal_height=True) as reveal_box:
            reveal = gr.HTML("", js_on_load=None, scale=5)
            next_pair = gr.Button("Next pair ▶", variant="primary", size="sm", elem_id="rate-next", scale=0,
                                  min_width=140)
        prompt = gr.Markdown("", elem_id="rate-prompt")
        player = gr.HTML(player_html(None), js_on_load=None, elem_id="rate-player-box", padding=False)
        gr.Markdown(HELP, elem_id="rate-help")
        with gr.Accordion("Rubric: how to judge (key ?)", open=False, elem_id="rate-rubric") as rubric:
            gr.Markdown(_rubric_markdown(services), elem_id="rate-rubric-text")
        votes = _build_votes()
        marks = _build_marks()
        with gr.Row(elem_id="rate-actions"):
            submit = gr.Button("Submit judgement (Enter)", variant="primary", elem_id="rate-submit", scale=3)
            skip = gr.Button("Skip pair (S S)", variant="secondary", elem_id="rate-skip", scale=1)
    return dict(work=work, progress=progress, save_note=save_note, reveal_box=reveal_box, reveal=reveal,
                next=next_pair, prompt=prompt, player=player, rubric=rubric, votes=votes, submit=submit, skip=skip,
                **marks)


def _build_mine() -> dict[str, Any]:
    with gr.Accordion("Your judgements", open=False, elem_id="rate-mine"):
        gr.Markdown("Only your own servings are listed. A submitted answer is final (you have seen "
                    "which clip was which); open one to read it. Ask an admin to void a mistake.",
                    elem_classes=["muted"])
        mine = gr.Dataframe(headers=MY_HEADERS, value=[], interactive=False, wrap=True, max_height=260,
                            elem_id="rate-mine-table", show_label=False)
        with gr.Row():
            open_id = gr.Textbox(label="Task #", placeholder="e.g. 3", max_lines=1, min_width=100, scale=1,
                                 elem_id="rate-open-id")
            open_task = gr.Button("Open", size="sm", scale=1, elem_id="rate-open")
            mine_refresh = gr.Button("Refresh", size="sm", scale=1, elem_id="rate-mine-refresh")
    return dict(mine=mine, open_id=open_id, open_task=open_task, mine_refresh=mine_refresh)


def build(services: StudioServices) -> RatingTab:
    session, pair, marks = gr.State(None), gr.State(None), gr.State([])
    telemetry = gr.Textbox(visible=False)
    signin = _build_signin()
    with gr.Tabs(selected="rate-pairs", visible=False, elem_id="rate-subtabs") as subtabs:
        with gr.Tab("Rate pairs", id="rate-pairs", elem_id="rate-pairs-tab"):
            with gr.Column(visible=False, elem_id="rate-done") as done_box:
                done = gr.Markdown("")
                check_again = gr.Button("Check for new pairs", size="sm", elem_id="rate-check-again")
            work = _build_work(services)
            mine = _build_mine()
        with gr.Tab("Admin", id="rate-admin", visible=False, elem_id="rate-admin-tab") as admin_tab:
            admin = rating_admin.build(services)
    timer = gr.Timer(AUTOSAVE_SECONDS)
    return RatingTab(session=session, pair=pair, marks=marks, telemetry=telemetry, subtabs=subtabs,
                     admin_tab=admin_tab, done_box=done_box, done=done, check_again=check_again, timer=timer,
                     admin=admin, **signin, **work, **mine)


def _wire_access(tab: RatingTab, h: RatingHandlers, blocks: gr.Blocks, main_tab: gr.Tab) -> None:
    quiet: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}
    # Logged in through the studio (`--auth raters`): the pair is ready whenever the Rate tab opens,
    # even if it was clicked before this load event finished.
    blocks.load(h.on_load, outputs=tab.access_outputs(), **quiet).success(
        h.load_if_needed, inputs=[tab.session, tab.pair], outputs=tab.pair_outputs(), **quiet).success(
        h.my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.sign_in.click(h.sign_in, inputs=[tab.name, tab.password], outputs=[*tab.access_outputs(), tab.password],
                      api_name="rate_sign_in").success(
        h.load_next, inputs=tab.session, outputs=tab.pair_outputs(), **quiet).success(
        h.my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.password.submit(h.sign_in, inputs=[tab.name, tab.password], outputs=[*tab.access_outputs(), tab.password],
                        **quiet).success(h.load_next, inputs=tab.session, outputs=tab.pair_outputs(), **quiet).success(
        h.my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.sign_out.click(h.sign_out, outputs=[*tab.access_outputs(), *tab.pair_outputs()], api_name="rate_sign_out")
    main_tab.select(h.load_if_needed, inputs=[tab.session, tab.pair], outputs=tab.pair_outputs(), **quiet).success(
        h.my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    for button in (tab.next, tab.check_again):
        button.click(h.load_next, inputs=tab.session, outputs=tab.pair_outputs(), **quiet).success(
            h.my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)


def _wire_pair(tab: RatingTab, h: RatingHandlers) -> None:
    quiet: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}
    tab.submit.click(h.submit, inputs=tab.save_inputs(),
                     outputs=[tab.pair, tab.reveal_box, tab.reveal, tab.progress, tab.submit, tab.skip, tab.save_note],
                     js=TAKE_TELEMETRY, api_name="rate_submit", show_progress="hidden")
    tab.skip.click(h.skip, inputs=[tab.telemetry, tab.session, tab.pair], outputs=tab.pair_outputs(),
                   js=TAKE_TELEMETRY, api_name="rate_skip", show_progress="hidden")
    gr.on([v.input for v in tab.votes], h.save(False), inputs=tab.save_inputs(), outputs=tab.save_note,
          js=TAKE_TELEMETRY, trigger_mode="always_last", **quiet)
    tab.timer.tick(h.save(True), inputs=tab.save_inputs(), outputs=tab.save_note, js=TAKE_TELEMETRY, **quiet)
    # Mark in / out read the players' frame in the page; nothing goes to the server.
    tab.mark_in.click(None, outputs=tab.mark_start, js="() => (window.amxRate ? window.amxRate.frame() + 1 : null)")
    tab.mark_out.click(None, outputs=tab.mark_end, js="() => (window.amxRate ? window.amxRate.frame() + 1 : null)")
    mark_fields = [tab.mark_clip, tab.mark_start, tab.mark_end, tab.mark_kind, tab.mark_intent, tab.mark_note]
    mark_outputs = [tab.marks, tab.mark_list, tab.mark_note, tab.mark_start, tab.mark_end]
    tab.add_mark.click(refusals("Mark", len(mark_outputs))(add_mark), inputs=[tab.pair, tab.marks, *mark_fields],
                       outputs=mark_outputs, **quiet).success(
        h.save(False), inputs=tab.save_inputs(), outputs=tab.save_note, js=TAKE_TELEMETRY, **quiet)
    tab.remove_marks.click(refusals("Mark", 2)(remove_marks), inputs=[tab.marks, tab.mark_list],
                           outputs=[tab.marks, tab.mark_list], **quiet).success(
        h.save(False), inputs=tab.save_inputs(), outputs=tab.save_note, js=TAKE_TELEMETRY, **quiet)
    tab.open_task.click(h.open_task, inputs=[tab.session, tab.open_id], outputs=[*tab.pair_outputs(), tab.subtabs],
                        api_name="rate_open", show_progress="hidden")
    tab.mine.select(pick_task, outputs=tab.open_id, **quiet)
    tab.mine_refresh.click(h.my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)


def wire(tab: RatingTab, services: StudioServices, *, blocks: gr.Blocks, main_tab: gr.Tab) -> None:
    h = RatingHandlers(services, n_access=len(tab.access_outputs()), n_pair=len(tab.pair_outputs()))
    _wire_access(tab, h, blocks, main_tab)
    _wire_pair(tab, h)
    rating_admin.wire(tab.admin, services, session=tab.session, admin_tab=tab.admin_tab)
