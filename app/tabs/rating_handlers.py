"""The Rate tab's handlers: sign-in, serving pairs, saving drafts, submitting and skipping.

`RatingHandlers` holds what they share (the rating service, the telemetry ledger, the rubric's
hints); `AccessView` and `PairView` name what the sign-in and pair handlers change, listed in the
order of `RatingTab.access_outputs()` and `RatingTab.pair_outputs()` (app/tabs/rating.py), which
API clients see as positions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr

from engine.core.errors import EngineError, InvalidRequest
from engine.rating.accounts import LoginThrottled, guarded_login
from engine.rating.types import DIMENSIONS, PermissionDenied, ServedPair

from ..adapters import parse_id
from ..feedback import Refusal, refuse, refusals
from ..services.context import StudioServices
from ..services.rating_view import (DIMENSION_TITLES, Session, Telemetry, TelemetryLedger, form_from_values,
                                    judgement_rows, login_rater, mark_label, marks_from_form, player_html,
                                    progress_markdown, prompt_markdown, rating_message, request_login, reveal_html,
                                    revealed_generations, rubric_hints, session_rater, vote_values)

TITLE = "Rating"
MARK_DEFAULTS = ("A", "smear", "intentional")  # clip, kind, intent of a new pair's first mark


def _hidden() -> Any:
    return gr.update(visible=False)


def _shown() -> Any:
    return gr.update(visible=True)


def _fail(exc: BaseException) -> Refusal:
    """What the handlers raise for an engine refusal: `refusals` makes it a toast and keeps the outputs."""
    return Refusal(rating_message(exc), TITLE)


@dataclass
class AccessView:
    """Who is signed in, as the page shows it (`RatingTab.access_outputs()` order)."""
    session: Any
    signin_box: Any
    whoami_row: Any
    whoami: Any
    subtabs: Any
    admin_tab: Any
    signin_note: Any

    def values(self) -> list[Any]:
        return [self.session, self.signin_box, self.whoami_row, self.whoami, self.subtabs, self.admin_tab,
                self.signin_note]


@dataclass
class PairView:
    """The pair on screen, or none (`RatingTab.pair_outputs()` order; a new pair's mark starts afresh)."""
    pair: Any
    marks: Any
    player: Any
    prompt: Any
    progress: Any
    work: Any
    done_box: Any
    done: Any
    reveal_box: Any
    submit: Any
    skip: Any
    mark_list: Any
    votes: list[Any]
    save_note: Any = ""
    mark_start: Any = None
    mark_end: Any = None
    mark_note: Any = ""
    mark_defaults: tuple[str, str, str] = field(default=MARK_DEFAULTS)  # mark_clip, mark_kind, mark_intent

    def values(self) -> list[Any]:
        return [self.pair, self.marks, self.player, self.prompt, self.progress, self.work, self.done_box, self.done,
                self.reveal_box, self.submit, self.skip, self.save_note, self.mark_list, self.mark_start,
                self.mark_end, self.mark_note, *self.mark_defaults, *self.votes]


def empty_pair(message: str) -> list[Any]:
    """No pair on screen; `message` (markdown) in the "done" box when there is one."""
    return PairView(pair=None, marks=[], player=player_html(None), prompt="", progress="", work=_hidden(),
                    done_box=gr.update(visible=bool(message)), done=message, reveal_box=_hidden(),
                    submit=gr.update(interactive=False), skip=gr.update(interactive=False),
                    mark_list=gr.update(choices=[], value=[]), votes=vote_values(None)).values()


def pick_task(evt: gr.SelectData) -> Any:
    row = evt.row_value or []
    return str(row[0]) if row and str(row[0]).isdigit() else gr.skip()


class RatingHandlers:
    """The tab's handlers. The ones that others call (`load_next`) are wrapped in `refusals` here,
    so a refusal inside them is their own toast, as when they run alone."""

    def __init__(self, services: StudioServices, n_access: int, n_pair: int) -> None:
        self.services = services
        self.service = services.rating
        self.ledger = TelemetryLedger()
        try:
            self.hints = rubric_hints(self.service.rubric())
        except EngineError:
            self.hints = {}
        self.n_pair = n_pair
        # Named as before (`name=`): Gradio names the events without an api_name after them.
        self.sign_in = refusals("Sign in", n_access + 1, name="sign_in")(self._sign_in)
        self.load_next = refusals(TITLE, n_pair, name="load_next")(self._load_next)
        self.open_task = refusals(TITLE, n_pair + 1, name="open_task")(self._open_task)
        self.my_judgements = refusals(TITLE, 1, name="my_judgements")(self._my_judgements)
        self.submit = refusals(TITLE, 7, name="submit")(self._submit)
        # skip returns the next pair itself: a refused skip stays on its pair.
        self.skip = refusals(TITLE, n_pair, name="skip")(self._skip)

    def rater_of(self, state: Any, request: Any) -> Any:
        try:
            return session_rater(self.service, state, request)
        except EngineError as exc:
            raise _fail(exc) from None

    def signed_out(self, state: Any, request: Any) -> bool:
        """No in-tab sign-in and no studio login with a rater account (then nothing to act as)."""
        if state is not None:
            return False
        try:
            return login_rater(self.service, request) is None
        except EngineError:
            return False  # a disabled account: rater_of says so

    # -- access ----------------------------------------------------------------------------------
    def access(self, rater: Any, note: str = "", login: str | None = None) -> list[Any]:
        if rater is None:
            return AccessView(None, _shown(), _hidden(), "", _hidden(), _hidden(), note).values()
        role = "admin" if rater.is_admin else "rater"
        who = f"Signed in as **{rater.name}** ({role})" + (f" · {rater.experience}" if rater.experience else "")
        return AccessView(session=Session(rater.id, rater.name, login).as_state(), signin_box=_hidden(),
                          whoami_row=_shown(), whoami=who, subtabs=_shown(),
                          admin_tab=gr.update(visible=rater.is_admin), signin_note="").values()

    def no_accounts_note(self) -> str:
        try:
            empty = not self.service.repository.list_raters()
        except EngineError:
            return ""
        return ("No rater accounts exist yet. Create the first admin on the studio machine: "
                "`python -m engine rating rater add NAME --role admin`." if empty else "")

    def on_load(self, request: gr.Request) -> list[Any]:
        user = request_login(request)
        if user:
            try:
                rater = login_rater(self.service, request)
            except EngineError:
                rater = None
            if rater is not None:
                return self.access(rater, login=user)
            return self.access(None, f"You are logged in to the studio as **{user}**, which is not an active "
                                     "rater account: sign in with one below.")
        return self.access(None, self.no_accounts_note())

    def _sign_in(self, name: str, password: str, request: gr.Request) -> list[Any]:
        login = request_login(request)
        try:
            logged = login_rater(self.service, request)
        except EngineError as exc:
            raise _fail(exc) from None
        if logged is not None:  # the studio login is a rater account: that is who rates here
            if (name or "").strip() != logged.name:
                refuse(f"You are logged in to the studio as {logged.name}; log out of the studio to rate as "
                       "someone else.", "Sign in")
            return [*self.access(logged, login=login), ""]
        found: list[Any] = []

        def check(n: str, p: str) -> bool:
            found.append(self.service.authenticate(n, p))
            return found[-1] is not None

        client = getattr(request, "client", None) if request is not None else None
        try:  # the same back-off as the studio's own login, per account and per address
            guarded_login(check, (name or "").strip(), password or "", address=getattr(client, "host", None))
        except LoginThrottled as exc:
            refuse(f"Sign-in refused: {exc}.", "Sign in")
        rater = found[-1] if found else None
        if rater is None:
            refuse("Wrong name or password, or the account is disabled.", "Sign in")
        return [*self.access(rater, login=login), ""]

    def sign_out(self) -> list[Any]:
        return [*self.access(None), *empty_pair("")]

    # -- pairs -----------------------------------------------------------------------------------
    def show_pair(self, served: ServedPair) -> list[Any]:
        marks = marks_from_form(served.draft)
        return PairView(pair={"id": served.assignment_id, "frames": served.num_frames, "status": served.status},
                        marks=marks, player=player_html(served, self.hints),
                        prompt=prompt_markdown(served, self.services.taxonomy),
                        progress=progress_markdown(served.progress, served), work=_shown(), done_box=_hidden(),
                        done="", reveal_box=_hidden(), submit=gr.update(interactive=served.status == "pending"),
                        skip=gr.update(interactive=served.status != "submitted"),
                        mark_list=gr.update(choices=[(mark_label(m), str(i)) for i, m in enumerate(marks)], value=[]),
                        votes=vote_values(served.draft)).values()

    def _load_next(self, request: gr.Request, state: Any) -> list[Any]:
        if self.signed_out(state, request):
            return empty_pair("")
        rater = self.rater_of(state, request)
        try:
            served = self.service.next_pair(rater)
            if served is None:
                progress = self.service.progress(rater)
                return empty_pair(f"### Nothing left to rate\n{progress} pairs done. Thank you! New pairs appear "
                                  "here when an admin builds them.")
        except EngineError as exc:
            raise _fail(exc) from None
        return self.show_pair(served)

    def load_if_needed(self, request: gr.Request, state: Any, current: Any) -> list[Any]:
        if current is not None or self.signed_out(state, request):
            return [gr.skip()] * self.n_pair
        return self.load_next(request, state)

    def _open_task(self, request: gr.Request, state: Any, task: Any) -> list[Any]:
        rater = self.rater_of(state, request)
        task_id = parse_id(task)
        if task_id is None:
            refuse("Type the number of one of your tasks (the Task column).", TITLE)
        try:
            served = self.service.open_assignment(rater, task_id)
        except EngineError as exc:
            raise _fail(exc) from None
        if served.status == "skipped":
            refuse(f"Task {task_id} was skipped; there is no answer to show.", TITLE)
        return [*self.show_pair(served), gr.Tabs(selected="rate-pairs")]

    def _my_judgements(self, request: gr.Request, state: Any) -> list[list[Any]]:
        if self.signed_out(state, request):
            return []
        try:
            return judgement_rows(self.service.judgements(self.rater_of(state, request)))
        except EngineError as exc:
            raise _fail(exc) from None

    # -- saving ----------------------------------------------------------------------------------
    def save(self, only_time: bool) -> Callable[..., Any]:
        """The draft saver: on every change (`only_time` False) and on the timer (True: only when time
        passed or a clip was replayed). Its one output is the save note."""
        @refusals(TITLE, 1)
        def handler(request: gr.Request, telemetry: str, state: Any, current: Any, marks: list[dict[str, Any]],
                    *values: Any) -> Any:
            if not current or current.get("status") != "pending" or self.signed_out(state, request):
                return gr.skip()
            rater = self.rater_of(state, request)
            elapsed, replays, give_back = self.ledger.take(Telemetry.parse(telemetry, current["id"]))
            if only_time and elapsed < 0.5 and not replays:
                give_back()
                return gr.skip()
            form = form_from_values(values, marks, elapsed_s=elapsed, replays=replays)
            try:
                self.service.save_draft(rater, current["id"], form)
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

    def _submit(self, request: gr.Request, telemetry: str, state: Any, current: Any, marks: list[dict[str, Any]],
                *values: Any) -> list[Any]:
        # Outputs: pair, reveal_box, reveal, progress, submit, skip, save_note.
        rater = self.rater_of(state, request)
        if not current:
            refuse("There is no pair on screen to submit.", TITLE)
        form = form_from_values(values, marks)
        missing = [f"{DIMENSION_TITLES[d]} ({n})" for n, d in enumerate(DIMENSIONS, 1)
                   if d not in form.votes or form.votes[d].choice is None]
        if missing:
            refuse(f"Still to choose: {', '.join(missing)}. Keys: the number, then A, B, T or X.", TITLE)
        elapsed, replays, give_back = self.ledger.take(Telemetry.parse(telemetry, current["id"]))
        try:
            progress = self.service.submit(rater, current["id"], form_from_values(values, marks, elapsed_s=elapsed,
                                                                                  replays=replays))
            left, right = revealed_generations(self.service, rater, current["id"])
        except EngineError as exc:
            give_back()
            raise _fail(exc) from None
        # The reveal is built only now, from the stored serving (revealed_generations refuses a pending one).
        return [{**current, "status": "submitted"}, _shown(),
                reveal_html(left, right, progress, progress.finished, show_ids=rater.is_admin),
                progress_markdown(progress), gr.update(interactive=False), gr.update(interactive=False),
                f"Submitted {time.strftime('%H:%M:%S')}"]

    def _skip(self, request: gr.Request, telemetry: str, state: Any, current: Any) -> list[Any]:
        rater = self.rater_of(state, request)
        if not current or current.get("status") != "pending":
            refuse("Only a pair you have not answered yet can be skipped.", TITLE)
        elapsed, _, give_back = self.ledger.take(Telemetry.parse(telemetry, current["id"]))
        try:
            self.service.skip(rater, current["id"], elapsed_s=elapsed)
        except EngineError as exc:
            give_back()
            raise _fail(exc) from None
        gr.Info("Pair skipped; it will not be served to you again.", duration=3)
        return self.load_next(request, state)
