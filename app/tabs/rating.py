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
import time
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.rating.accounts import LoginThrottled, guarded_login
from engine.core.errors import EngineError, InvalidRequest
from engine.rating.types import DIMENSIONS, PermissionDenied, ServedPair

from ..adapters import parse_id
from ..services.context import StudioServices
from ..services.rating_view import (CHOICE_OPTIONS, DIMENSION_TITLES, INTENT_OPTIONS, KIND_OPTIONS, SCORE_OPTIONS,
                                    STRENGTH_OPTIONS, Session, Telemetry, TelemetryLedger, form_from_values,
                                    judgement_rows, login_rater, mark_label, marks_from_form,
                                    player_html, progress_markdown, prompt_markdown, rating_message,
                                    request_login, reveal_html, revealed_generations, rubric_hints,
                                    rubric_markdown, session_rater, vote_values)
from ..feedback import Refusal, refuse, refusals
from . import rating_admin
from .rating_marks import add_mark, remove_marks
from .rating_help import HELP, css_text, head_html, launch_kwargs, studio_view

__all__ = ["RatingTab", "build", "css_text", "head_html", "launch_kwargs", "studio_view", "wire"]

log = logging.getLogger(__name__)

AUTOSAVE_SECONDS = 15.0
TITLE = "Rating"
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


MARK_DEFAULTS = ("A", "smear", "intentional")  # clip, kind, intent of a new pair's first mark

def _rubric_markdown(services: StudioServices) -> str:
    try:
        return rubric_markdown(services.rating.rubric())
    except EngineError as exc:  # a broken rubric file must not take the studio down
        return f"The rubric could not be read: {exc}"


def build(services: StudioServices) -> RatingTab:
    session, pair, marks = gr.State(None), gr.State(None), gr.State([])
    telemetry = gr.Textbox(visible=False)
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
    with gr.Tabs(selected="rate-pairs", visible=False, elem_id="rate-subtabs") as subtabs:
        with gr.Tab("Rate pairs", id="rate-pairs", elem_id="rate-pairs-tab"):
            with gr.Column(visible=False, elem_id="rate-done") as done_box:
                done = gr.Markdown("")
                check_again = gr.Button("Check for new pairs", size="sm", elem_id="rate-check-again")
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
                with gr.Row(elem_id="rate-actions"):
                    submit = gr.Button("Submit judgement (Enter)", variant="primary", elem_id="rate-submit", scale=3)
                    skip = gr.Button("Skip pair (S S)", variant="secondary", elem_id="rate-skip", scale=1)
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
        with gr.Tab("Admin", id="rate-admin", visible=False, elem_id="rate-admin-tab") as admin_tab:
            admin = rating_admin.build(services)
    timer = gr.Timer(AUTOSAVE_SECONDS)
    return RatingTab(session, pair, marks, telemetry, signin_box, name, password, sign_in, signin_note, whoami_row,
                     whoami, sign_out, subtabs, admin_tab, work, done_box, done, check_again, progress, save_note,
                     prompt, player, reveal_box, reveal, next_pair, rubric, votes, mark_clip, mark_start, mark_end,
                     mark_in, mark_out, mark_kind, mark_intent, mark_note, add_mark, mark_list, remove_marks, submit,
                     skip, mine, open_id, open_task, mine_refresh, timer, admin)


def _fail(exc: BaseException) -> Refusal:
    """What the handlers raise for an engine refusal: `refusals` makes it a toast and keeps the outputs."""
    return Refusal(rating_message(exc), TITLE)


def wire(tab: RatingTab, services: StudioServices, *, blocks: gr.Blocks, main_tab: gr.Tab) -> None:
    service = services.rating
    ledger = TelemetryLedger()
    try:
        hints = rubric_hints(service.rubric())
    except EngineError:
        hints = {}
    hidden, shown = gr.update(visible=False), gr.update(visible=True)

    def rater_of(state: Any, request: Any) -> Any:
        try:
            return session_rater(service, state, request)
        except EngineError as exc:
            raise _fail(exc) from None

    # -- access ----------------------------------------------------------------------------------
    def access(rater: Any, note: str = "", login: str | None = None) -> list[Any]:
        if rater is None:
            return [None, shown, hidden, "", hidden, hidden, note]
        role = "admin" if rater.is_admin else "rater"
        who = f"Signed in as **{rater.name}** ({role})" + (f" · {rater.experience}" if rater.experience else "")
        return [Session(rater.id, rater.name, login).as_state(), hidden, shown, who, shown,
                gr.update(visible=rater.is_admin), ""]

    def no_accounts_note() -> str:
        try:
            empty = not service.repository.list_raters()
        except EngineError:
            return ""
        return ("No rater accounts exist yet. Create the first admin on the studio machine: "
                "`python -m engine rating rater add NAME --role admin`." if empty else "")

    def on_load(request: gr.Request) -> list[Any]:
        user = request_login(request)
        if user:
            try:
                rater = login_rater(service, request)
            except EngineError:
                rater = None
            if rater is not None:
                return access(rater, login=user)
            return access(None, f"You are logged in to the studio as **{user}**, which is not an active rater "
                                "account: sign in with one below.")
        return access(None, no_accounts_note())

    n_pair = len(tab.pair_outputs())

    @refusals("Sign in", len(tab.access_outputs()) + 1)
    def sign_in(name: str, password: str, request: gr.Request) -> list[Any]:
        login = request_login(request)
        try:
            logged = login_rater(service, request)
        except EngineError as exc:
            raise _fail(exc) from None
        if logged is not None:  # the studio login is a rater account: that is who rates here
            if (name or "").strip() != logged.name:
                refuse(f"You are logged in to the studio as {logged.name}; log out of the studio to rate as "
                       "someone else.", "Sign in")
            return [*access(logged, login=login), ""]
        found: list[Any] = []

        def check(n: str, p: str) -> bool:
            found.append(service.authenticate(n, p))
            return found[-1] is not None

        client = getattr(request, "client", None) if request is not None else None
        try:  # the same back-off as the studio's own login, per account and per address
            guarded_login(check, (name or "").strip(), password or "", address=getattr(client, "host", None))
        except LoginThrottled as exc:
            refuse(f"Sign-in refused: {exc}.", "Sign in")
        rater = found[-1] if found else None
        if rater is None:
            refuse("Wrong name or password, or the account is disabled.", "Sign in")
        return [*access(rater, login=login), ""]

    def sign_out() -> list[Any]:
        return [*access(None), *empty_pair("")]

    # -- pairs -----------------------------------------------------------------------------------
    def empty_pair(message: str) -> list[Any]:
        return [None, [], player_html(None), "", "", hidden, gr.update(visible=bool(message)), message, hidden,
                gr.update(interactive=False), gr.update(interactive=False), "",
                gr.update(choices=[], value=[]), None, None, "", *MARK_DEFAULTS, *vote_values(None)]

    def show_pair(served: ServedPair) -> list[Any]:
        marks = marks_from_form(served.draft)
        return [{"id": served.assignment_id, "frames": served.num_frames, "status": served.status}, marks,
                player_html(served, hints), prompt_markdown(served, services.taxonomy),
                progress_markdown(served.progress, served), shown, hidden, "", hidden,
                gr.update(interactive=served.status == "pending"),
                gr.update(interactive=served.status != "submitted"), "",
                gr.update(choices=[(mark_label(m), str(i)) for i, m in enumerate(marks)], value=[]), None, None, "",
                *MARK_DEFAULTS, *vote_values(served.draft)]  # a new pair's mark starts afresh

    def signed_out(state: Any, request: Any) -> bool:
        """No in-tab sign-in and no studio login with a rater account (then nothing to act as)."""
        if state is not None:
            return False
        try:
            return login_rater(service, request) is None
        except EngineError:
            return False  # a disabled account: rater_of says so

    @refusals(TITLE, n_pair)
    def load_next(request: gr.Request, state: Any) -> list[Any]:
        if signed_out(state, request):
            return empty_pair("")
        rater = rater_of(state, request)
        try:
            served = service.next_pair(rater)
            if served is None:
                progress = service.progress(rater)
                return empty_pair(f"### Nothing left to rate\n{progress} pairs done. Thank you! New pairs appear "
                                  "here when an admin builds them.")
        except EngineError as exc:
            raise _fail(exc) from None
        return show_pair(served)

    def load_if_needed(request: gr.Request, state: Any, current: Any) -> list[Any]:
        if current is not None or signed_out(state, request):
            return [gr.skip()] * len(tab.pair_outputs())
        return load_next(request, state)

    @refusals(TITLE, n_pair + 1)
    def open_task(request: gr.Request, state: Any, task: Any) -> list[Any]:
        rater = rater_of(state, request)
        task_id = parse_id(task)
        if task_id is None:
            refuse("Type the number of one of your tasks (the Task column).", TITLE)
        try:
            served = service.open_assignment(rater, task_id)
        except EngineError as exc:
            raise _fail(exc) from None
        if served.status == "skipped":
            refuse(f"Task {task_id} was skipped; there is no answer to show.", TITLE)
        return [*show_pair(served), gr.Tabs(selected="rate-pairs")]

    def pick_task(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return str(row[0]) if row and str(row[0]).isdigit() else gr.skip()

    @refusals(TITLE, 1)
    def my_judgements(request: gr.Request, state: Any) -> list[list[Any]]:
        if signed_out(state, request):
            return []
        try:
            return judgement_rows(service.judgements(rater_of(state, request)))
        except EngineError as exc:
            raise _fail(exc) from None

    # -- saving ----------------------------------------------------------------------------------
    def save(only_time: bool) -> Callable[..., Any]:
        @refusals(TITLE, 1)
        def handler(request: gr.Request, telemetry: str, state: Any, current: Any, marks: list[dict[str, Any]],
                    *values: Any) -> Any:
            if not current or current.get("status") != "pending" or signed_out(state, request):
                return gr.skip()
            rater = rater_of(state, request)
            elapsed, replays, give_back = ledger.take(Telemetry.parse(telemetry, current["id"]))
            if only_time and elapsed < 0.5 and not replays:
                give_back()
                return gr.skip()
            form = form_from_values(values, marks, elapsed_s=elapsed, replays=replays)
            try:
                service.save_draft(rater, current["id"], form)
            except PermissionDenied as exc:
                give_back()
                raise _fail(exc) from None
            except EngineError as exc:
                give_back()
                if isinstance(exc, InvalidRequest) and exc.field == "assignment":
                    return gr.skip()  # submitted meanwhile (Enter right after a click): nothing to say
                return f"Draft not saved: {rating_message(exc)}"
            return f"Draft saved {time.strftime('%H:%M:%S')}"
        return handler

    @refusals(TITLE, 7)
    def submit(request: gr.Request, telemetry: str, state: Any, current: Any, marks: list[dict[str, Any]],
               *values: Any) -> list[Any]:
        rater = rater_of(state, request)
        if not current:
            refuse("There is no pair on screen to submit.", TITLE)
        form = form_from_values(values, marks)
        missing = [f"{DIMENSION_TITLES[d]} ({n})" for n, d in enumerate(DIMENSIONS, 1)
                   if d not in form.votes or form.votes[d].choice is None]
        if missing:
            refuse(f"Still to choose: {', '.join(missing)}. Keys: the number, then A, B, T or X.", TITLE)
        elapsed, replays, give_back = ledger.take(Telemetry.parse(telemetry, current["id"]))
        try:
            progress = service.submit(rater, current["id"], form_from_values(values, marks, elapsed_s=elapsed,
                                                                             replays=replays))
            left, right = revealed_generations(service, rater, current["id"])
        except EngineError as exc:
            give_back()
            raise _fail(exc) from None
        # The reveal is built only now, from the stored serving (revealed_generations refuses a pending one).
        return [{**current, "status": "submitted"}, shown,
                reveal_html(left, right, progress, progress.finished, show_ids=rater.is_admin),
                progress_markdown(progress), gr.update(interactive=False), gr.update(interactive=False),
                f"Submitted {time.strftime('%H:%M:%S')}"]

    @refusals(TITLE, n_pair)  # returns the next pair itself: a refused skip must not move on
    def skip(request: gr.Request, telemetry: str, state: Any, current: Any) -> list[Any]:
        rater = rater_of(state, request)
        if not current or current.get("status") != "pending":
            refuse("Only a pair you have not answered yet can be skipped.", TITLE)
        elapsed, _, give_back = ledger.take(Telemetry.parse(telemetry, current["id"]))
        try:
            service.skip(rater, current["id"], elapsed_s=elapsed)
        except EngineError as exc:
            give_back()
            raise _fail(exc) from None
        gr.Info("Pair skipped; it will not be served to you again.", duration=3)
        return load_next(request, state)

    # -- events ----------------------------------------------------------------------------------
    quiet: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}
    # Logged in through the studio (`--auth raters`): the pair is ready whenever the Rate tab opens,
    # even if it was clicked before this load event finished.
    blocks.load(on_load, outputs=tab.access_outputs(), **quiet).success(
        load_if_needed, inputs=[tab.session, tab.pair], outputs=tab.pair_outputs(), **quiet).success(
        my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.sign_in.click(sign_in, inputs=[tab.name, tab.password], outputs=[*tab.access_outputs(), tab.password],
                      api_name="rate_sign_in").success(
        load_next, inputs=tab.session, outputs=tab.pair_outputs(), **quiet).success(
        my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.password.submit(sign_in, inputs=[tab.name, tab.password], outputs=[*tab.access_outputs(), tab.password],
                        **quiet).success(load_next, inputs=tab.session, outputs=tab.pair_outputs(), **quiet).success(
        my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.sign_out.click(sign_out, outputs=[*tab.access_outputs(), *tab.pair_outputs()], api_name="rate_sign_out")
    main_tab.select(load_if_needed, inputs=[tab.session, tab.pair], outputs=tab.pair_outputs(), **quiet).success(
        my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    for button in (tab.next, tab.check_again):
        button.click(load_next, inputs=tab.session, outputs=tab.pair_outputs(), **quiet).success(
            my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    tab.submit.click(submit, inputs=tab.save_inputs(),
                     outputs=[tab.pair, tab.reveal_box, tab.reveal, tab.progress, tab.submit, tab.skip, tab.save_note],
                     js=TAKE_TELEMETRY, api_name="rate_submit", show_progress="hidden")
    tab.skip.click(skip, inputs=[tab.telemetry, tab.session, tab.pair], outputs=tab.pair_outputs(),
                   js=TAKE_TELEMETRY, api_name="rate_skip", show_progress="hidden")
    gr.on([v.input for v in tab.votes], save(False), inputs=tab.save_inputs(), outputs=tab.save_note,
          js=TAKE_TELEMETRY, trigger_mode="always_last", **quiet)
    tab.timer.tick(save(True), inputs=tab.save_inputs(), outputs=tab.save_note, js=TAKE_TELEMETRY, **quiet)
    # Mark in / out read the players' frame in the page; nothing goes to the server.
    tab.mark_in.click(None, outputs=tab.mark_start, js="() => (window.amxRate ? window.amxRate.frame() + 1 : null)")
    tab.mark_out.click(None, outputs=tab.mark_end, js="() => (window.amxRate ? window.amxRate.frame() + 1 : null)")
    mark_fields = [tab.mark_clip, tab.mark_start, tab.mark_end, tab.mark_kind, tab.mark_intent, tab.mark_note]
    mark_outputs = [tab.marks, tab.mark_list, tab.mark_note, tab.mark_start, tab.mark_end]
    tab.add_mark.click(refusals("Mark", len(mark_outputs))(add_mark), inputs=[tab.pair, tab.marks, *mark_fields], outputs=mark_outputs, **quiet).success(
        save(False), inputs=tab.save_inputs(), outputs=tab.save_note, js=TAKE_TELEMETRY, **quiet)
    tab.remove_marks.click(refusals("Mark", 2)(remove_marks), inputs=[tab.marks, tab.mark_list], outputs=[tab.marks, tab.mark_list],
                           **quiet).success(save(False), inputs=tab.save_inputs(), outputs=tab.save_note,
                                            js=TAKE_TELEMETRY, **quiet)
    tab.open_task.click(open_task, inputs=[tab.session, tab.open_id], outputs=[*tab.pair_outputs(), tab.subtabs],
                        api_name="rate_open", show_progress="hidden")
    tab.mine.select(pick_task, outputs=tab.open_id, **quiet)
    tab.mine_refresh.click(my_judgements, inputs=tab.session, outputs=tab.mine, **quiet)
    rating_admin.wire(tab.admin, services, session=tab.session, admin_tab=tab.admin_tab)
