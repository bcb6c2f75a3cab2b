"""What the Rate tab shows and sends, without Gradio: form values <-> `JudgementForm`, the player
markup, prompt / progress / reveal text, telemetry from the page, and one-line error messages.

Screen conventions (see `engine.rating.types`): A is the clip shown left, B right. Frames are
counted from 1 on screen, like a timesheet; `DeformationMark` stores them from 0.
"""
from __future__ import annotations

import html
import json
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from engine.core.errors import EngineError, InvalidRequest, NotFound
from engine.rating.types import (CHOICES, DEFORMATION_INTENTS, DEFORMATION_KINDS, DIMENSIONS, DeformationMark,
                                 JudgementForm, JudgementView, PermissionDenied, RaterProgress, ServedPair, Vote)

from ..formatting import model_label, plain

if TYPE_CHECKING:
    from engine.core.pks import Taxonomy
    from engine.rating.rubric import Rubric
    from engine.rating.service import RatingService
    from engine.storage.clips import GenerationRecord
    from engine.storage.repository.rating import Rater

__all__ = [
    "CHOICE_OPTIONS", "DIMENSION_TITLES", "INTENT_OPTIONS", "KIND_OPTIONS", "SCORE_OPTIONS", "STRENGTH_OPTIONS",
    "VOTE_FIELDS", "Session", "Telemetry", "TelemetryLedger", "form_from_values", "judgement_rows", "mark_from_inputs",
    "mark_label", "marks_from_form", "player_html", "progress_markdown", "prompt_markdown", "rating_message",
    "login_rater", "request_login", "reveal_html", "revealed_generations", "rubric_hints", "rubric_markdown",
    "session_rater", "vote_values",
]

DIMENSION_TITLES: dict[str, str] = {
    "prompt_understanding": "Prompt understanding", "artistic_motion": "Artistic motion",
    "style_fidelity": "Style fidelity", "visual_quality": "Visual quality",
    "character_consistency": "Character consistency",
}
SHORT_TITLES: dict[str, str] = {
    "prompt_understanding": "Prompt", "artistic_motion": "Motion", "style_fidelity": "Style",
    "visual_quality": "Quality", "character_consistency": "Character",
}
CHOICE_OPTIONS: tuple[tuple[str, str], ...] = (("A", "A"), ("B", "B"), ("Tie", "tie"), ("Both bad", "both_bad"))
# 0 stands for "not given" in the radios (a Radio cannot be emptied by a click).
STRENGTH_OPTIONS: tuple[tuple[str, int], ...] = (("–", 0), ("1", 1), ("2", 2), ("3", 3))
SCORE_OPTIONS: tuple[tuple[str, int], ...] = (("–", 0), *((str(n), n) for n in range(1, 6)))
KIND_LABELS: dict[str, str] = {
    "smear": "Smear", "squash_and_stretch": "Squash & stretch", "multiples": "Multiples",
    "chibi_shift": "Chibi shift", "impact_frame": "Impact frame", "limb_break": "Limb break",
    "face_melt": "Face melt", "identity_drift": "Identity drift", "flicker": "Flicker", "other": "Other",
}
KIND_OPTIONS: tuple[tuple[str, str], ...] = tuple((KIND_LABELS.get(k, k), k) for k in DEFORMATION_KINDS)
INTENT_LABELS: dict[str, str] = {"intentional": "Intentional (art)", "failure": "Failure"}
INTENT_OPTIONS: tuple[tuple[str, str], ...] = tuple((INTENT_LABELS.get(i, i), i) for i in DEFORMATION_INTENTS)
VOTE_FIELDS: tuple[str, ...] = ("choice", "strength", "score_a", "score_b")
CHOICE_TEXT = {"A": "A", "B": "B", "tie": "Tie", "both_bad": "Both bad"}
MAX_SAVE_ELAPSED_S = 24 * 3600.0
MAX_SAVE_REPLAYS = 10_000


# -- who is signed in -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """What a browser session keeps of an in-tab sign-in (in `gr.State`, on the server): the
    account, and the studio login it was made under (None without `--auth`). Never a password."""

    id: int
    name: str
    login: str | None = None

    def as_state(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "login": self.login}

    @classmethod
    def from_state(cls, state: Any) -> "Session | None":
        if isinstance(state, Mapping) and isinstance(state.get("id"), int) and isinstance(state.get("name"), str):
            login = state.get("login")
            return cls(state["id"], state["name"], login if isinstance(login, str) else None)
        return None


def request_login(request: Any) -> str | None:
    """The studio login of an event (Gradio's `request.username`, set by the server), or None."""
    name = getattr(request, "username", None) if request is not None else None
    return name if isinstance(name, str) and name else None


def login_rater(service: "RatingService", request: Any) -> "Rater | None":
    """The rater account the studio login names (`--auth raters`), or None when the login is not
    a rater account (no `--auth`, or a studio-wide `--auth USER:PASSWORD`). Disabled: refused."""
    login = request_login(request)
    if login is None:
        return None
    try:
        return service.rater_by_name(login)
    except NotFound:
        return None


def session_rater(service: "RatingService", state: Any, request: Any = None) -> "Rater":
    """The acting rater of one event, as the database has it now.

    Logged in to the studio with a rater account, it is that account, taken from the server's
    login and never from the session's state: an event sent with another session's hash still
    acts as whoever is logged in. Otherwise it is this session's in-tab sign-in, which must have
    been made under the same studio login. A disabled or renamed account is refused.
    """
    by_login = login_rater(service, request)
    if by_login is not None:
        return by_login
    session = Session.from_state(state)
    if session is None:
        raise PermissionDenied("sign_in", "sign in with your rater account first")
    if session.login != request_login(request):
        raise PermissionDenied("sign_in", "this sign-in was made under another login; sign in again")
    try:
        rater = service.rater_by_name(session.name)
    except NotFound:
        raise PermissionDenied("sign_in", "this account no longer exists; sign in again") from None
    if rater.id != session.id:
        raise PermissionDenied("sign_in", "the account changed since you signed in; sign in again")
    return rater


# -- form values ----------------------------------------------------------------------------------
def _whole(value: Any) -> int | None:
    """A radio's number (0 = not given) as the service wants it: None or a positive int."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def vote_values(form: JudgementForm | None) -> list[Any]:
    """The 20 radio values (dimension order, then choice/strength/score A/score B) of a form."""
    out: list[Any] = []
    votes = form.votes if form is not None else {}
    for dim in DIMENSIONS:
        vote = votes.get(dim) or Vote()
        out += [vote.choice, vote.strength or 0, vote.score_a or 0, vote.score_b or 0]
    return out


def form_from_values(values: Sequence[Any], marks: Sequence[Mapping[str, Any]] | None, *, elapsed_s: float = 0.0,
                     replays: int = 0) -> JudgementForm:
    """A `JudgementForm` from the radios (see `vote_values`) and the session's marks.

    A strength only goes with A or B, so it is dropped when the choice is Tie or Both bad (the
    radio may still show one from before the choice changed).
    """
    if len(values) != len(DIMENSIONS) * len(VOTE_FIELDS):
        raise ValueError(f"expected {len(DIMENSIONS) * len(VOTE_FIELDS)} vote values, got {len(values)}")
    votes: dict[str, Vote] = {}
    for n, dim in enumerate(DIMENSIONS):
        choice, strength, score_a, score_b = values[n * 4: n * 4 + 4]
        choice = choice if choice in CHOICES else None
        vote = Vote(choice, _whole(strength) if choice in ("A", "B") else None, _whole(score_a), _whole(score_b))
        if vote != Vote():
            votes[dim] = vote
    return JudgementForm(votes, marks_from_state(marks or ()), elapsed_s, replays)


def marks_from_state(marks: Sequence[Mapping[str, Any]]) -> tuple[DeformationMark, ...]:
    return tuple(DeformationMark(str(m["clip"]), int(m["start"]), int(m["end"]), str(m["kind"]), str(m["intent"]),
                                 str(m.get("note") or "")) for m in marks)


def marks_from_form(form: JudgementForm | None) -> list[dict[str, Any]]:
    """The session's list of marks (plain dicts: it lives in `gr.State`) from a saved form."""
    if form is None:
        return []
    return [{"clip": m.clip, "start": m.start_frame, "end": m.end_frame, "kind": m.kind, "intent": m.intent,
             "note": m.note} for m in form.deformations]


def mark_from_inputs(clip: Any, start: Any, end: Any, kind: Any, intent: Any, note: Any,
                     num_frames: int) -> dict[str, Any]:
    """A new mark from the form (frames counted from 1); start and end are swapped when given the
    wrong way round (mark-out pressed before mark-in)."""
    if clip not in ("A", "B"):
        raise InvalidRequest("mark.clip", "choose clip A or B")
    if kind not in DEFORMATION_KINDS:
        raise InvalidRequest("mark.kind", "choose what kind of deformation it is")
    if intent not in DEFORMATION_INTENTS:
        raise InvalidRequest("mark.intent", "choose intentional (art) or failure")
    frames: list[int] = []
    for name, value in (("start", start), ("end", end)):
        number = None if value is None or isinstance(value, bool) else float(value)
        if number is None or not math.isfinite(number) or number != int(number) or not 1 <= number <= num_frames:
            raise InvalidRequest(f"mark.{name}", f"must be a frame from 1 to {num_frames} "
                                                 f"(press I / O to take it from the players)")
        frames.append(int(number))
    first, last = sorted(frames)
    text = str(note or "").strip()
    if len(text) > 2000:
        raise InvalidRequest("mark.note", "must be at most 2000 characters")
    return {"clip": clip, "start": first - 1, "end": last - 1, "kind": kind, "intent": intent, "note": text}


def mark_label(mark: Mapping[str, Any]) -> str:
    start, end = int(mark["start"]) + 1, int(mark["end"]) + 1
    frames = f"frame {start}" if start == end else f"frames {start}–{end}"
    note = f" · “{mark['note']}”" if mark.get("note") else ""
    return (f"{mark['clip']} · {frames} · {KIND_LABELS.get(mark['kind'], mark['kind'])} · "
            f"{'art' if mark['intent'] == 'intentional' else 'failure'}{note}")


# -- what the page shows --------------------------------------------------------------------------
def file_url(path: Any) -> str:
    """The URL Gradio 6 serves an allowed file under, relative to the page (works under a root path)."""
    return "gradio_api/file=" + quote(str(path), safe="/")


def rubric_markdown(rubric: "Rubric") -> str:
    """The rubric for the accordion: its intro, then each dimension and deformation kind by title."""
    intro = rubric.intro.splitlines()
    if intro and intro[0].startswith("# "):
        intro = intro[1:]
    parts = ["\n".join(intro).strip(), "## Dimensions"]
    parts += [f"### {n}. {sec.title}\n{sec.body}" for n, sec in enumerate(rubric.dimensions.values(), 1)]
    parts.append("## Deformation kinds")
    parts += [f"### {sec.title}\n{sec.body}" for sec in rubric.deformations.values()]
    return "\n\n".join(parts)


def rubric_hints(rubric: "Rubric") -> dict[str, str]:
    """The question each dimension asks (its section's first sentence), shown under the players."""
    hints = {}
    for dim, sec in rubric.dimensions.items():
        text = " ".join(sec.body.split("\n\n", 1)[0].replace("*", "").split())
        end = min((i for i in (text.find("? "), text.find(". ")) if i >= 0), default=len(text) - 1)
        hints[dim] = text[: end + 1]
    return hints


def player_html(pair: ServedPair | None, hints: Mapping[str, str] | None = None) -> str:
    """Two locked players and one transport; `app/rating.js` drives them (nothing here runs code)."""
    if pair is None:
        return "<div class='amx-none'></div>"
    esc = html.escape
    hints = hints or {}
    ratio = pair.width / pair.height if pair.width > 0 and pair.height > 0 else 16 / 9
    chips = "".join(
        f"<button type='button' class='amx-chip' data-dim='{d}' data-n='{n}' "
        f"data-hint='{esc(hints.get(d, ''))}' title='{esc(DIMENSION_TITLES[d])} (key {n})'>"
        f"<b>{n}</b> {esc(SHORT_TITLES[d])} <span class='amx-chip-value'>–</span></button>"
        for n, d in enumerate(DIMENSIONS, 1))
    slots = "".join(
        f"<figure class='amx-slot' data-clip='{c}' style='--ar: {ratio:.4f}'>"
        f"<figcaption><b>{c}</b> <span>{side}</span></figcaption>"
        f"<video id='amx-video-{c.lower()}' src='{esc(file_url(path))}' muted playsinline preload='auto' "
        f"disablepictureinpicture width='{pair.width}' height='{pair.height}'></video>"
        "</figure>"
        for c, side, path in (("A", "left", pair.video_a), ("B", "right", pair.video_b)))
    last = pair.num_frames
    return (
        f"<div id='amx-player' class='amx-player' data-assignment='{pair.assignment_id}' data-fps='{pair.fps}' "
        f"data-frames='{pair.num_frames}' tabindex='-1'>"
        f"<div class='amx-stage'>{slots}</div>"
        "<div class='amx-controls' role='toolbar' aria-label='Player controls for both clips'>"
        "<button type='button' data-act='back10' title='Back 10 frames (Shift+← or PageUp)'>−10</button>"
        "<button type='button' data-act='back' title='Previous frame (←)'>◀︎</button>"
        "<button type='button' data-act='play' class='amx-play' title='Play / pause both (Space)'>▶︎ Play</button>"
        "<button type='button' data-act='fwd' title='Next frame (→)'>▶︎|</button>"
        "<button type='button' data-act='fwd10' title='Forward 10 frames (Shift+→ or PageDown)'>+10</button>"
        f"<input type='range' class='amx-scrub' min='0' max='{last - 1}' step='1' value='0' "
        "aria-label='Scrub both clips'>"
        f"<span class='amx-counter' aria-live='off'>Frame 1 / {last}</span>"
        "<span class='amx-rates' role='group' aria-label='Speed (R)'>"
        "<button type='button' data-rate='0.25'>¼×</button><button type='button' data-rate='0.5'>½×</button>"
        "<button type='button' data-rate='1' class='amx-on'>1×</button></span>"
        "<label class='amx-loop-label' title='Loop (L)'><input type='checkbox' class='amx-loop' checked> Loop</label>"
        "<button type='button' data-act='flip' class='amx-flip' title='Swap the clips in place, same frame (F)'>"
        "⇄ Flip A/B</button>"
        "</div>"
        f"<div class='amx-strip'>{chips}<span class='amx-note' aria-live='polite'></span></div>"
        "<div class='amx-hint'></div>"
        "</div>")


def _escape_md(text: str) -> str:
    # One line, shown as text: no HTML, and no Markdown image or link that would load from a prompt.
    return plain(" ".join(str(text).split()))


def _tag_text(tags: Mapping[str, Sequence[str]], taxonomy: "Taxonomy | None") -> str:
    if not tags:
        return "no tags"
    if taxonomy is not None:
        try:
            return " · ".join(_escape_md(line) for line in taxonomy.describe_tags(dict(tags)))
        except (EngineError, KeyError, ValueError):
            pass  # tags of another taxonomy version: the raw ids below
    return " · ".join(_escape_md(f"{k}={', '.join(v)}") for k, v in tags.items())


def prompt_markdown(pair: ServedPair | None, taxonomy: "Taxonomy | None" = None) -> str:
    if pair is None:
        return ""
    if pair.same_prompt:
        return f"**Prompt:** {_escape_md(pair.prompt_a)}  \n<small>**Tags:** {_tag_text(pair.tags_a, taxonomy)}</small>"
    return (f"**A's prompt:** {_escape_md(pair.prompt_a)} <small>({_tag_text(pair.tags_a, taxonomy)})</small>  \n"
            f"**B's prompt:** {_escape_md(pair.prompt_b)} <small>({_tag_text(pair.tags_b, taxonomy)})</small>")


def progress_markdown(progress: RaterProgress | None, pair: ServedPair | None = None) -> str:
    if progress is None:
        return ""
    if pair is None:
        return f"**{progress.done} of {progress.total}** pairs done."
    editing = " · your submitted answer (final)" if pair.status == "submitted" else ""
    resumed = " · draft restored" if pair.status != "submitted" and pair.draft.votes else ""
    return (f"**Pair {min(progress.done + 1, max(progress.total, 1))} of {progress.total}** · "
            f"{progress.done} done · task #{pair.assignment_id}{editing}{resumed}")


def _settings_line(record: "GenerationRecord", show_ids: bool) -> str:
    parts = [f"history #{record.id}"] if show_ids else []
    if record.checkpoint:
        parts.append(f"checkpoint {record.checkpoint}")
    try:
        req = record.request
        for a in req.adapters:
            parts.append(f"adapter {a.path.rstrip('/').rsplit('/', 1)[-1]} ×{a.strength:g}")
        if req.steps:
            parts.append(f"{req.steps} steps")
        if req.guidance is not None:
            parts.append(f"guidance {req.guidance:g}")
        if req.quantization and req.quantization != "none":
            parts.append(str(req.quantization))
    except EngineError:
        pass  # a row from a newer engine: the model name is what matters
    if record.width and record.height and record.num_frames and record.fps:
        parts.append(f"{record.width}×{record.height}, {record.num_frames} frames @ {record.fps} fps")
    return " · ".join(html.escape(p) for p in parts)


def reveal_html(left: "GenerationRecord", right: "GenerationRecord", progress: RaterProgress | None,
                finished: bool, *, show_ids: bool = False) -> str:
    """Which model made A and B, after the judgement is stored. History ids only for admins: a
    rater has no use for them, and they would tie this serving to the studio's history."""
    rows = "".join(
        f"<div class='amx-reveal-row'><span class='amx-reveal-clip'>{c}</span>"
        f"<div><b>{html.escape(model_label(g.model))}"
        f"</b><br><small>{_settings_line(g, show_ids)}</small></div></div>" for c, g in (("A", left), ("B", right)))
    done = f" {progress} done." if progress is not None else ""
    nxt = ("That was the last pair for now: thank you! <kbd>Enter</kbd> shows the summary." if finished else
           "<kbd>Enter</kbd> next pair now · <kbd>Esc</kbd> stay on this one")
    return (f"<div class='amx-reveal'><div class='amx-reveal-head'>✓ Judgement saved.{done} "
            f"Here is which clip was which:</div>{rows}"
            f"<div class='amx-reveal-foot'>{nxt} <span class='amx-countdown'></span></div></div>")


def revealed_generations(service: "RatingService", rater: "Rater", assignment_id: int
                         ) -> tuple["GenerationRecord", "GenerationRecord"]:
    """The two generations of one of the rater's *submitted* servings, left then right.

    Blindness holds until the answer is in: a pending serving, or anyone else's, is refused.
    """
    repo = service.repository
    record = repo.get_assignment(assignment_id)
    if record.rater_id != rater.id:
        raise PermissionDenied("reveal", f"rating task {assignment_id} belongs to another rater")
    if record.status != "submitted":
        raise PermissionDenied("reveal", "the models are shown only after the judgement is submitted")
    pair = repo.get_comparison(record.comparison_id)
    left = record.left_generation_id
    right = pair.generation_b_id if left == pair.generation_a_id else pair.generation_a_id
    gens = repo.generations([left, right])
    return gens[left], gens[right]


def judgement_rows(views: Sequence[JudgementView]) -> list[list[Any]]:
    """The rater's own servings, newest first, for the "Your judgements" table."""
    rows = []
    for v in reversed(views):
        answers = " · ".join(
            f"{SHORT_TITLES[d]} {CHOICE_TEXT.get(v.votes[d].choice or '', '–')}"
            f"{v.votes[d].strength or '' if v.votes[d].choice in ('A', 'B') else ''}"
            for d in DIMENSIONS if d in v.votes)
        when = v.submitted_at or v.served_at
        rows.append([v.assignment_id, v.status, when.strftime("%Y-%m-%d %H:%M") if when else "",
                     f"{v.server_time_s:.0f} s" if v.status != "pending" else "–", v.replays, answers or "–",
                     len(v.deformations)])
    return rows


# -- telemetry from the page ------------------------------------------------------------------------
@dataclass(frozen=True)
class Telemetry:
    """Running totals the page reports for one pair since it loaded it (`token` names that load)."""

    assignment_id: int
    token: str
    elapsed_s: float
    replays: int

    @classmethod
    def parse(cls, text: Any, assignment_id: int | None) -> "Telemetry | None":
        """None for anything unusable (no script, another pair's numbers, garbage): time is then
        simply not counted, which never blocks a save."""
        if not isinstance(text, str) or not text or assignment_id is None:
            return None
        try:
            data = json.loads(text)
            aid, token = int(data["aid"]), str(data["token"])[:64]
            elapsed, replays = float(data["elapsed"]), int(data["replays"])
        except (ValueError, TypeError, KeyError):
            return None
        if aid != assignment_id or not token or not math.isfinite(elapsed):
            return None
        return cls(aid, token, max(0.0, elapsed), max(0, replays))


class TelemetryLedger:
    """Turns the page's running totals into the since-the-last-save amounts the service adds up.

    Totals rather than deltas cross the wire, so a save that is dropped or fails loses nothing:
    the next one carries it. The part taken is reserved at once (concurrent saves of one page get
    disjoint parts) and given back if the save fails.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._saved: OrderedDict[tuple[int, str], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def take(self, t: Telemetry | None) -> tuple[float, int, Callable[[], None]]:
        if t is None:
            return 0.0, 0, lambda: None
        key = (t.assignment_id, t.token)
        with self._lock:
            before = self._saved.get(key, (0.0, 0))
            after = (max(before[0], t.elapsed_s), max(before[1], t.replays))
            self._saved[key] = after
            self._saved.move_to_end(key)
            while len(self._saved) > self._capacity:
                self._saved.popitem(last=False)

        def give_back() -> None:
            with self._lock:
                if self._saved.get(key) == after:
                    self._saved[key] = before

        return (min(after[0] - before[0], MAX_SAVE_ELAPSED_S), min(after[1] - before[1], MAX_SAVE_REPLAYS),
                give_back)


def new_token() -> str:
    return uuid.uuid4().hex


# -- messages ---------------------------------------------------------------------------------------
_MARK_FIELDS = {"clip": "Clip", "kind": "Kind", "intent": "Intent", "start": "Start frame", "end": "End frame",
                "note": "Note", "start_frame": "Start frame", "end_frame": "End frame"}


def rating_message(exc: BaseException) -> str:
    """One line for a toast: the dimension or mark it is about, then what to do."""
    if isinstance(exc, PermissionDenied):
        return exc.reason[:1].upper() + exc.reason[1:]
    if isinstance(exc, InvalidRequest):
        parts = exc.field.split(".")
        if parts[0] == "votes" and len(parts) >= 2 and parts[1] in DIMENSION_TITLES:
            what = {"choice": "choose A, B, Tie or Both bad", "strength": "strength", "score_a": "score of A",
                    "score_b": "score of B"}.get(parts[2] if len(parts) > 2 else "", "")
            if len(parts) > 2 and parts[2] == "choice" and "required" in exc.reason:
                return f"{DIMENSION_TITLES[parts[1]]}: {what} before submitting."
            return f"{DIMENSION_TITLES[parts[1]]} {what}: {exc.reason}".replace("  ", " ")
        if parts[0] == "mark" and len(parts) > 1:
            return f"{_MARK_FIELDS.get(parts[1], parts[1])}: {exc.reason}"
        if parts[0].startswith("deformations["):
            n = parts[0][len("deformations["):-1]
            label = _MARK_FIELDS.get(parts[1], parts[1]) if len(parts) > 1 else "mark"
            return f"Mark {int(n) + 1 if n.isdigit() else n}, {label.lower()}: {exc.reason}"
        return f"{exc.field}: {exc.reason}"
    return str(exc) or type(exc).__name__
