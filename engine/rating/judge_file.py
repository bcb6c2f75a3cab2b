"""Judgements from a file (`python -m engine rating judge --from FILE`): JSON, JSON Lines or CSV.

One judgement per row, in clip terms (history ids), checked exactly like the Rate tab's form
(`engine.rating.forms.check_form`) and stored through `RatingService.submit`. Every row is
checked before anything is stored: one bad row and nothing of the file is written. A JSON row::

    {"rater": "aki", "pair": 3,
     "votes": {"visual_quality": {"winner": 12, "strength": 2, "scores": {"12": 4, "15": 2}},
               "artistic_motion": 12, "style_fidelity": "tie", "prompt_understanding": "both_bad",
               "character_consistency": {"winner": 15}},
     "deformations": [{"clip": 12, "start_frame": 3, "end_frame": 6, "kind": "smear",
                       "intent": "intentional", "note": ""}],
     "elapsed_s": 40}

A vote is the winning history id, "tie" or "both_bad", or an object with ``winner`` (same
values), optional ``strength`` (1-3, with a winner) and ``scores`` (history id -> 1-5). Frames
are the pair's playback frames, 0-based, as in the Rate tab. A CSV has the columns ``rater``,
``pair``, one column per dimension (winner id | tie | both_bad), optionally ``strength`` (for
every winner), ``elapsed_s`` and ``deformations`` (the list above as JSON text).

A rater judges a pair once: a pair the rater already submitted is refused (answers are final;
an admin may void one); a pair the rater has open there is submitted; a rater with another pair open must finish
or skip it first. The server's time for an imported judgement is close to zero, so `rating stats`
may flag the rater as too fast.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest
from ..storage.repository.rating import ComparisonRecord, Rater
from ..storage.repository.rating_records import ServeChoice
from .forms import check_form
from .types import DIMENSIONS, DeformationMark, JudgementForm, Vote

__all__ = ["ParsedJudgement", "read_judgements", "submit_judgements"]


@dataclass(frozen=True)
class ParsedJudgement:
    row: int
    rater: Rater
    pair: ComparisonRecord
    form: JudgementForm  # A = the pair's generation_a, B = its generation_b
    assignment_id: int | None  # the rater's open serving of this pair, if any


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InvalidRequest("--from", f"{path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            rows: Any = list(csv.DictReader(text.splitlines()))
        elif text.lstrip().startswith(("[", "{")) and path.suffix.lower() == ".json":
            rows = json.loads(text)
            rows = [rows] if isinstance(rows, dict) else rows
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("--from", f"{path} could not be read ({exc})") from None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise InvalidRequest("--from", f"{path} must hold one or more judgement objects (see docs/preference.md)")
    return rows


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvalidRequest(where, f"must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise InvalidRequest(where, f"must be a whole number, got {value!r}")


def _vote(raw: Any, pair: ComparisonRecord, where: str, strength: Any) -> Vote:
    a, b = pair.generation_a_id, pair.generation_b_id
    body = dict(raw) if isinstance(raw, Mapping) else {"winner": raw}
    unknown = set(body) - {"winner", "strength", "scores"}
    if unknown:
        raise InvalidRequest(f"{where}.{sorted(unknown)[0]}", "unknown; a vote has winner, strength, scores")
    winner = body.get("winner")
    if isinstance(winner, str) and winner.strip() in ("tie", "both_bad"):
        choice = winner.strip()
    else:
        gid = _int(winner, f"{where}.winner")
        if gid not in (a, b):
            raise InvalidRequest(f"{where}.winner", f"history {gid} is not in pair {pair.id} ({a} vs {b}); "
                                                    "give one of them, tie or both_bad")
        choice = "A" if gid == a else "B"
    s = body.get("strength", strength if choice in ("A", "B") else None)
    if s is not None and s != "":
        s = _int(s, f"{where}.strength")
    else:
        s = None
    scores = body.get("scores") or {}
    if not isinstance(scores, Mapping):
        raise InvalidRequest(f"{where}.scores", "must map a history id to a 1-5 score")
    by_id = {_int(k, f"{where}.scores"): v for k, v in scores.items()}
    stray = set(by_id) - {a, b}
    if stray:
        raise InvalidRequest(f"{where}.scores", f"history {min(stray)} is not in pair {pair.id}")
    return Vote(choice, s, by_id.get(a), by_id.get(b))


def _marks(raw: Any, pair: ComparisonRecord, where: str) -> tuple[DeformationMark, ...]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError:
            raise InvalidRequest(where, "must be a JSON list of marks") from None
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest(where, "must be a list of marks")
    out = []
    for n, m in enumerate(raw):
        w = f"{where}[{n}]"
        if not isinstance(m, Mapping):
            raise InvalidRequest(w, "must be an object with clip, start_frame, end_frame, kind, intent")
        gid = _int(m.get("clip"), f"{w}.clip")
        if gid not in (pair.generation_a_id, pair.generation_b_id):
            raise InvalidRequest(f"{w}.clip", f"history {gid} is not in pair {pair.id}")
        # Types and ranges are check_form's (the Rate tab's checks), so they are handed over as given.
        given: dict[str, Any] = {k: m.get(k) for k in ("start_frame", "end_frame", "kind", "intent")}
        out.append(DeformationMark("A" if gid == pair.generation_a_id else "B", given["start_frame"],
                                   given["end_frame"], given["kind"], given["intent"], m.get("note") or ""))
    return tuple(out)


def read_judgements(service: Any, path: Path | str) -> list[ParsedJudgement]:
    """Every row of the file as a checked judgement; raises on the first bad row (naming it)."""
    path = Path(path).expanduser()
    repo = service.repository
    out: list[ParsedJudgement] = []
    seen: set[tuple[int, int]] = set()
    for n, r in enumerate(_rows(path), 1):
        try:
            rater = service.rater_by_name(str(r.get("rater") or ""))
            pair = repo.get_comparison(_int(r.get("pair"), "pair"))
            votes_raw = r.get("votes")
            if votes_raw is None:  # CSV: one column per dimension
                votes_raw = {d: r[d] for d in DIMENSIONS if r.get(d) not in (None, "")}
            if not isinstance(votes_raw, Mapping):
                raise InvalidRequest("votes", "must map a dimension to a vote")
            votes = {}
            for dim, raw in votes_raw.items():
                if dim not in DIMENSIONS:
                    raise InvalidRequest("votes", f"'{dim}' is not a dimension; choose from: {', '.join(DIMENSIONS)}")
                votes[dim] = _vote(raw, pair, f"votes.{dim}", r.get("strength"))
            elapsed = r.get("elapsed_s", 0.0)
            form = JudgementForm(votes, _marks(r.get("deformations"), pair, "deformations"),
                                 float(elapsed) if isinstance(elapsed, (int, float, str)) and str(elapsed).strip()
                                 else 0.0, 0)
            check_form(form, pair, complete=True, require_scores=service.config.require_scores)
            key = (rater.id, pair.id)
            if key in seen:
                raise InvalidRequest("pair", f"{rater.name} judges pair {pair.id} twice in this file")
            seen.add(key)
            open_id = None
            for a in repo.list_assignments(rater.id):
                if a.comparison_id == pair.id and not a.is_repeat and a.status == "submitted":
                    raise InvalidRequest("pair", f"{rater.name} already judged pair {pair.id}; edit it in the Rate tab")
                if a.status == "pending":
                    if a.comparison_id != pair.id:
                        raise InvalidRequest("rater", f"{rater.name} has pair {a.comparison_id} open in the Rate tab; "
                                                      "submit or skip it first")
                    open_id = a.id
            out.append(ParsedJudgement(n, rater, pair, form, open_id))
        except InvalidRequest as exc:
            raise InvalidRequest(f"--from row {n}: {exc.field}", exc.reason) from None
        except ValueError as exc:
            raise InvalidRequest(f"--from row {n}", str(exc)) from None
        except Exception as exc:  # NotFound, PermissionDenied: one line naming the row
            from ..core.errors import EngineError

            if isinstance(exc, EngineError):
                raise InvalidRequest(f"--from row {n}", str(exc)) from None
            raise
    return out


def submit_judgements(service: Any, judgements: list[ParsedJudgement]) -> list[int]:
    """Serve each pair to its rater (A = generation_a) and submit; returns the assignment ids."""
    repo = service.repository
    done = []
    for j in judgements:
        assignment = j.assignment_id
        if assignment is None:
            def choose(_cands: Any, j: ParsedJudgement = j) -> ServeChoice:
                return ServeChoice(j.pair.id, j.pair.generation_a_id)

            record = repo.serve_next(j.rater.id, service.config.repeat_min_gap, choose)
            assignment = record.id
        else:
            record = repo.get_assignment(assignment)
        form = j.form
        if record.left_generation_id != j.pair.generation_a_id:  # an open serving shown the other way round
            flip = {"A": "B", "B": "A"}
            form = JudgementForm({d: Vote(flip.get(v.choice or "", v.choice), v.strength, v.score_b, v.score_a)
                                  for d, v in form.votes.items()},
                                 tuple(DeformationMark(flip[m.clip], m.start_frame, m.end_frame, m.kind, m.intent,
                                                       m.note) for m in form.deformations),
                                 form.elapsed_s, form.replays)
        service.submit(j.rater, assignment, form)
        done.append(assignment)
    return done
