"""What the Eval tab shows and does, without Gradio: runs, their clips, report, plots, rating pairs.

An eval run is a folder under ``<data dir>/eval/<run id>/`` (`engine.eval.state.RunFolder`). The
tab lists those folders, renders the run's report live from its items (so it is current while a
run is still going), shows the PNG plots `eval report` wrote into ``plots/`` (whatever their names),
and turns the run's same-prompt / same-seed clips of two systems into rating pairs, so animators
judge exactly the comparisons the automatic metrics made. `human_vs_automatic` then puts the two
verdicts, per system, in one table.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from engine.core.errors import EngineError, InvalidRequest, NotFound
from engine.eval.state import RUN_ID_RE, RunFolder, item_key

from ..formatting import NOISE_NOTE, is_preview, plain
from .rating_view import DIMENSION_TITLES

if TYPE_CHECKING:
    from engine.rating.service import RatingService
    from engine.storage.clips import HistoryService
    from engine.storage.repository import Rater

log = logging.getLogger(__name__)

MAKE_ONE = "python -m engine eval run builtin"
EMPTY_TEXT = (f"**No eval runs yet.** Make one on the studio machine with `{MAKE_ONE}` (the built-in prompt "
              "suite; `python -m engine eval suite --out FILE.yaml` writes it to edit, `eval run FILE.yaml` runs "
              "yours), then press Refresh. Runs are kept in `{folder}`.")
CLIP_HEADERS = ["System", "Prompt", "Seed", "Status", "Entry #", "Camera", "Timing", "Intensity", "Dynamic",
                "Consistency", "Flicker"]
# The adherence columns: the axis in `scores["adherence"]` and the key of what was measured.
_ADHERENCE = (("camera", "camera.class"), ("timing", "style.timing"), ("intensity", "motion.intensity"))
_TAG_OF = {"camera": "camera.movement", "timing": "style.timing", "intensity": "motion.intensity"}


def eval_dir(data_dir: Path) -> Path:
    """Where `python -m engine eval run` keeps its runs (engine/eval/cli.py)."""
    return data_dir / "eval"


@dataclass(frozen=True)
class RunEntry:
    run_id: str
    suite: str
    systems: tuple[str, ...]
    done: int
    total: int
    updated: float  # newest file of the run (epoch seconds): runs are listed newest first

    @property
    def label(self) -> str:
        when = datetime.fromtimestamp(self.updated).strftime("%Y-%m-%d %H:%M")
        return f"{self.run_id} · {self.suite} · {self.done}/{self.total} clips · {when}"


def _updated(folder: RunFolder) -> float:
    files = [folder.root / "run.json", folder.root / "results.json", *folder.state_files()]
    return max((p.stat().st_mtime for p in files if p.is_file()), default=0.0)


def _suite(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    suite = meta.get("suite")
    return suite if isinstance(suite, Mapping) else {}


def run_entry(folder: RunFolder) -> RunEntry:
    meta = folder.meta()
    suite = _suite(meta)
    systems = tuple(str(s["id"]) for s in suite.get("systems", []) if isinstance(s, Mapping) and "id" in s)
    per_system = sum(len(p.get("seeds", [])) for p in suite.get("prompts", []) if isinstance(p, Mapping))
    done = sum(1 for it in folder.all_items().values() if it.get("status") == "done")
    return RunEntry(folder.run_id, str(suite.get("name") or "?"), systems, done, per_system * len(systems),
                    _updated(folder))


def list_runs(root: Path) -> list[RunEntry]:
    """Every run folder under `root`, newest first. A folder whose files cannot be read is left out
    (logged): one broken run must not hide the others."""
    if not root.is_dir():
        return []
    out = []
    for path in root.iterdir():
        folder = RunFolder(path)
        if not path.is_dir() or not RUN_ID_RE.match(path.name) or not folder.exists:
            continue
        try:
            out.append(run_entry(folder))
        except (EngineError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("eval run %s is unreadable, not listed: %s", path, exc)
    return sorted(out, key=lambda e: (-e.updated, e.run_id))


def run_choices(runs: Sequence[RunEntry]) -> list[tuple[str, str]]:
    return [(r.label, r.run_id) for r in runs]


def empty_text(root: Path) -> str:
    return EMPTY_TEXT.replace("{folder}", str(root))


def open_run(root: Path, run_id: str | None) -> RunFolder:
    """The run `run_id` under `root`; only plain run ids (never a path a browser made up)."""
    if not run_id:
        raise InvalidRequest("Eval run", "pick a run first (Refresh lists them)")
    if not RUN_ID_RE.match(run_id):
        raise InvalidRequest("Eval run", f"'{run_id}' is not a run id")
    folder = RunFolder(root / run_id)
    if not folder.exists:
        raise NotFound(f"there is no eval run '{run_id}' in {root}; press Refresh")
    return folder


def report_markdown(folder: RunFolder) -> str:
    """The run's report, built now from its items (the same tables `eval report` writes)."""
    from engine.eval.report import build_report, render_markdown  # numpy and the metrics: on first use

    return render_markdown(build_report(folder))


def plot_files(folder: RunFolder) -> list[Path]:
    """The PNGs `eval report` wrote into the run's ``plots/`` folder, by name."""
    plots = folder.root / "plots"
    return sorted(p for p in plots.glob("*.png") if p.is_file()) if plots.is_dir() else []


def plot_note(folder: RunFolder, plots: Sequence[Path]) -> str:
    if not plots:
        return (f"No plots for this run yet: press *Write report* or run `python -m engine eval report "
                f"{folder.run_id}`.")
    when = datetime.fromtimestamp(max(p.stat().st_mtime for p in plots)).strftime("%Y-%m-%d %H:%M")
    return f"{len(plots)} plot{'s' if len(plots) != 1 else ''}, written {when} (*Write report* redraws them)."


# -- clips --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipRow:
    key: str
    system: str
    prompt: str
    seed: int
    status: str
    history_id: int | None
    cells: tuple[Any, ...]  # the table row, CLIP_HEADERS order


def _adherence_cell(scores: Mapping[str, Any], axis: str, measured_key: str) -> str:
    """"✓ pan", or "✗ shake (tag pan)": what was measured, and the tag when it missed."""
    verdict = (scores.get("adherence") or {}).get(axis)
    if verdict is None:
        return "—"  # the prompt has no tag on this axis
    measured = scores.get(measured_key)
    text = f"{'✓' if verdict else '✗'} {measured if measured is not None else '?'}"
    tag = (scores.get("tags") or {}).get(_TAG_OF[axis])
    return text if verdict or tag is None else f"{text} (tag {tag})"


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _row(key: str, item: Mapping[str, Any]) -> ClipRow:
    scores = item.get("scores") or {}
    status = str(item.get("status") or "?")
    hid = item.get("history_id")
    history_id = int(hid) if isinstance(hid, int) and not isinstance(hid, bool) else None
    dynamic = scores.get("dynamic_degree")
    cells = (str(item.get("system")), str(item.get("prompt")), int(item.get("seed") or 0), status,
             "" if history_id is None else history_id,
             *(_adherence_cell(scores, axis, measured) for axis, measured in _ADHERENCE),
             "—" if not isinstance(dynamic, bool) else ("yes" if dynamic else "no"),
             _number(scores.get("consistency")), _number(scores.get("flicker"), 2))
    if status != "done" and item.get("error"):
        cells = (*cells[:3], f"{status}: {str(item['error'])[:80]}", *cells[4:])
    return ClipRow(key, str(item.get("system")), str(item.get("prompt")), int(item.get("seed") or 0), status,
                   history_id, cells)


def clip_rows(folder: RunFolder) -> list[ClipRow]:
    """Every item of the run in the suite's order (system, prompt, seed); items the suite no
    longer names (an edited run.json) come last rather than vanish."""
    suite = _suite(folder.meta())
    systems = [str(s.get("id")) for s in suite.get("systems", [])]
    prompts = [str(p.get("id")) for p in suite.get("prompts", [])]

    def order(pair: tuple[str, Mapping[str, Any]]) -> tuple[int, int, int, str]:
        it = pair[1]
        s, p = str(it.get("system")), str(it.get("prompt"))
        return (systems.index(s) if s in systems else len(systems), prompts.index(p) if p in prompts else len(prompts),
                int(it.get("seed") or 0), pair[0])

    return [_row(key, item) for key, item in sorted(folder.all_items().items(), key=order)]


def table(rows: Sequence[ClipRow]) -> dict[str, Any]:
    """The Dataframe value (headers with the data, so an empty run still shows its columns)."""
    return {"headers": CLIP_HEADERS, "data": [list(r.cells) for r in rows]}


def key_of_row(row_value: Sequence[Any] | None) -> str | None:
    """The item key of a table row as the browser sent it (System, Prompt, Seed come first)."""
    if not row_value or len(row_value) < 3:
        return None
    try:
        return item_key(str(row_value[0]), str(row_value[1]), int(row_value[2]))
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Clip:
    row: ClipRow
    video: Path | None
    narrative: str
    preview: bool = False  # made by the preview model: noise, said next to it as everywhere else


def find_clip(folder: RunFolder, key: str | None, history: "HistoryService") -> Clip:
    """One item of the run and its video, looked up through the history (the item's own path may
    point into another machine's data folder after a merge)."""
    if not key:
        raise InvalidRequest("Clip", "pick a row of the table first")
    items = folder.all_items()
    if key not in items:
        raise NotFound(f"run '{folder.run_id}' has no clip '{key}'")
    row = _row(key, items[key])
    prompts = {str(p.get("id")): p for p in _suite(folder.meta()).get("prompts", [])}
    narrative = str(prompts.get(row.prompt, {}).get("narrative", ""))
    video: Path | None = None
    preview = False
    if row.history_id is not None:
        try:
            record = history.get(row.history_id)
        except NotFound:
            record = None  # deleted from the History since the run
        if record is not None:
            path = history.video_path(record)
            video = path if path is not None and path.is_file() else None
            preview = is_preview(record.model)
    return Clip(row, video, narrative, preview)


def clip_markdown(clip: Clip) -> str:
    r = clip.row
    # Suite text is whatever a trainer's file said: shown as text, nothing in it loads or links.
    head = f"**{plain(r.system)}** · prompt {plain(r.prompt)} · seed {r.seed} · {r.status}"
    if r.history_id is not None:
        head += f" · History #{r.history_id}"
    if clip.video is None and r.status == "done":
        head += "\n\nThe clip's file is gone (deleted from the History?)."
    return (head + (f"\n\n> {plain(' '.join(clip.narrative.split()))}" if clip.narrative else "")
            + (f"\n\n{NOISE_NOTE}" if clip.preview and clip.video is not None else ""))


# -- rating pairs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedPair:
    prompt: str
    seed: int
    a: int  # history id of system A's clip
    b: int


@dataclass(frozen=True)
class PairPlan:
    system_a: str
    system_b: str
    pairs: tuple[PlannedPair, ...]
    missing: tuple[str, ...]  # "prompt seed N": one of the two clips is not done


def plan_pairs(folder: RunFolder, system_a: str | None, system_b: str | None) -> PairPlan:
    """For each (prompt, seed), system A's clip against system B's, where both are done."""
    systems = [str(s.get("id")) for s in _suite(folder.meta()).get("systems", [])]
    for name, value in (("System A", system_a), ("System B", system_b)):
        if not value or value not in systems:
            raise InvalidRequest(name, f"pick one of the run's systems ({', '.join(systems)})")
    assert system_a and system_b  # checked just above
    if system_a == system_b:
        raise InvalidRequest("System B", "pick two different systems")
    by_cell: dict[tuple[str, int], dict[str, ClipRow]] = defaultdict(dict)
    for row in clip_rows(folder):
        if row.system in (system_a, system_b):
            by_cell[(row.prompt, row.seed)][row.system] = row
    pairs, missing = [], []
    for (prompt, seed), cell in by_cell.items():
        a, b = cell.get(system_a), cell.get(system_b)
        if a is None or b is None or a.status != "done" or b.status != "done" or a.history_id is None \
                or b.history_id is None:
            missing.append(f"{prompt} seed {seed}")
            continue
        pairs.append(PlannedPair(prompt, seed, a.history_id, b.history_id))
    return PairPlan(system_a, system_b, tuple(pairs), tuple(missing))


@dataclass
class SendReport:
    created: list[int] = field(default_factory=list)  # new pair ids
    existing: int = 0  # already a pair (from an earlier send, or built another way)
    skipped: list[str] = field(default_factory=list)  # why a pair could not be made
    missing: tuple[str, ...] = ()

    def markdown(self, plan: PairPlan) -> str:
        n = len(self.created)
        lines = [f"**{n} new rating pair{'s' if n != 1 else ''}** ({plan.system_a} vs {plan.system_b}), "
                 f"{self.existing} already there, {len(self.skipped) + len(self.missing)} skipped."]
        lines += [f"- skipped {m}: a clip is not done" for m in self.missing[:10]]
        lines += [f"- skipped {s}" for s in self.skipped[:10]]
        rest = len(self.missing) + len(self.skipped) - min(len(self.missing), 10) - min(len(self.skipped), 10)
        if rest > 0:
            lines.append(f"- … and {rest} more")
        if n:
            lines.append("\nAnimators get them in the Rate tab; the leaderboard is in Rate → Admin.")
        return "\n".join(lines)


def send_pairs(service: "RatingService", actor: "Rater", plan: PairPlan) -> SendReport:
    """Make each planned pair a rating pair, as `actor` (an admin: refused otherwise, before
    anything is written). Pairs that exist already are counted, not made again (the database
    refuses a second pair of the same two clips anyway; that refusal is counted the same way)."""
    known = {(p.generation_a_id, p.generation_b_id) for p in service.list_pairs(actor)}  # the admin check too
    report = SendReport(missing=plan.missing)
    for p in plan.pairs:
        where = f"{p.prompt} seed {p.seed}"
        if tuple(sorted((p.a, p.b))) in known:  # pairs are stored with the smaller id first
            report.existing += 1
            continue
        try:
            made = service.pick_pair(actor, p.a, p.b)
        except NotFound as exc:
            report.skipped.append(f"{where}: {exc.args[0] if exc.args else exc}")
            continue
        except InvalidRequest as exc:
            if "already a pair" in exc.reason:  # made meanwhile by another admin
                report.existing += 1
            else:
                report.skipped.append(f"{where}: {exc.reason}")
            continue
        known.add((made.generation_a_id, made.generation_b_id))
        report.created.append(made.id)
    return report


# -- human and automatic side by side ------------------------------------------------------------------
AUTO_COLUMNS = (("camera_adherence", "Camera ✓"), ("timing_adherence", "Timing ✓"),
                ("intensity_adherence", "Intensity ✓"), ("consistency", "Consistency"))


def human_vs_automatic(service: "RatingService", actor: "Rater", folder: RunFolder) -> dict[str, Any]:
    """Per system of the run: the automatic means (report) beside the animators' Bradley-Terry
    score and wins–ties–losses per dimension, over the judgements of pairs made of this run's
    clips (so other pairs in the studio do not blur the comparison). Admins only."""
    from engine.eval.report import build_report
    from engine.rating.leaderboard import build_leaderboard
    from engine.rating.types import DIMENSIONS

    service.list_pairs(actor)  # refuses anyone but an active admin, before reading judgements
    system_of = {r.history_id: r.system for r in clip_rows(folder) if r.history_id is not None}
    votes = [v for v in service.repository.votes()
             if v.generation_a_id in system_of and v.generation_b_id in system_of]
    gens = service.repository.generations({g for v in votes for g in (v.generation_a_id, v.generation_b_id)})
    c = service.config
    board = build_leaderboard(votes, gens, group_key="eval system", group_of=lambda r: system_of[r.id],
                              dimensions=DIMENSIONS, prior=c.bt_prior, rounds=c.bootstrap_rounds,
                              seed=c.bootstrap_seed, level=c.ci_level)
    report = build_report(folder)
    headers = ["System", "Clips", *(label for _, label in AUTO_COLUMNS),
               *(f"{DIMENSION_TITLES.get(d, d)} (BT, W–T–L)" for d in DIMENSIONS)]
    data = []
    for system, r in report["systems"].items():
        auto = [_number(r["metrics"].get(m, {}).get("mean"), 2) for m, _ in AUTO_COLUMNS]
        human = []
        for table_ in board.dimensions:
            e = next((x for x in table_.entries if x.group == system), None)
            human.append("—" if e is None else f"{e.score:+.2f} ({e.wins}–{e.ties}–{e.losses})")
        data.append([system, f"{r['clips']}/{r['expected']}", *auto, *human])
    judged = len({v.assignment_id for v in votes if not v.is_repeat})
    return {"headers": headers, "data": data, "judged": judged}

