"""On-policy preference rounds: `python -m engine loop round CONFIG.yaml` (docs/preference.md).

One round, from the adapter of the round before (or the config's ``start_adapter``, or none):

1. candidates: K clips per prompt (seeds ``seed + 1000·round + 100·prompt + k``) generated with
   the current adapter (and tag encoder, when the round trains one) through the job runner, each
   a history entry (source "loop", batch ``loop:<run>:round-NNN``) scored by the reward model
   (scores stored);
2. pairs: per prompt, the best candidate against the worst, the second against the second worst...
   by the studio's one utility (`engine.reward.utility`: the combined reward, mean r_d minus
   FAILURE_PENALTY · P(failure), never minus P(intentional)), kept when the margin is at least
   ``min_margin``; written as a trl export, with the reward model's per-segment failures of the
   paired clips as failure marks (`engine.training.onpolicy_carry`);
3. train: the DPO stage (`DPOTrainer`) on those pairs, failure-aware through the marks, starting
   from the parent adapter and tag encoder (their frozen snapshot is the reference), under the job
   runner's GPU lock; with ``objective: rwr`` reward-weighted flow matching on every candidate
   instead (`engine.training.rwr`; no pairs, no marks);
4. eval: held-out prompts (``heldout``; default the training prompts) at a fixed seed, with the
   parent and with the new adapter and tag encoder: mean utility, reward and P(failure) before and
   after; with ``eval_suite`` also the eval runner on that suite's prompts and seeds (systems
   ``parent`` and ``adapter``, each with its tag encoder), its PKS-adherence and pixel metrics
   compared pair by pair;
5. queue: the ``queue_pairs`` candidate pairs the reward model is least sure of become rating
   pairs for the animators (``queue_admin`` names the admin account);
6. report: ``rounds/round-NNN/report.json`` with the provenance (round, parent adapter and tag
   encoder, adapter and tag encoder); the next round starts from both.

Every stage's result is written to ``state.json`` before the next starts, and each candidate as
it finishes, so running the command again after an interruption continues the unfinished round;
a finished round (its report exists) makes the next call start the next round.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from ..core.errors import InvalidRequest
from ..core.settings import Settings
from ..core.toolkit.config import Section, build, limits
from ..core.toolkit.files import write_json
from ..reward.utility import utility
from .onpolicy_carry import (check_tag_encoder_keys, failure_marks, start_tag_encoder, trained_tag_encoder,
                             trains_tag_encoder, write_marks)

__all__ = ["LoopConfig", "add_parser", "load_loop_config", "run", "run_round", "utility"]

TagRule = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class LoopPrompt(Section):
    narrative: str
    tags: TagRule = field(default_factory=dict)


@dataclass(frozen=True)
class LoopGeneration(Section):
    width: int = field(default=32, metadata=limits(min=16, max=4096))
    height: int = field(default=32, metadata=limits(min=16, max=4096))
    num_frames: int = field(default=5, metadata=limits(min=1, max=1024))
    fps: int = field(default=8, metadata=limits(min=1, max=60))
    steps: int = field(default=4, metadata=limits(min=1, max=200))
    guidance: float = field(default=5.0, metadata=limits(min=0.0, max=30.0))


@dataclass(frozen=True)
class LoopConfig(Section):
    model: str
    output_dir: str
    reward_model: str
    prompts: tuple[LoopPrompt, ...]
    heldout: tuple[LoopPrompt, ...] = ()
    candidates: int = field(default=4, metadata=limits(min=2, max=64))
    seed: int = field(default=0, metadata=limits(min=0, max=2**31))
    min_margin: float = field(default=0.0, metadata=limits(min=0.0))
    pairs_per_prompt: int = field(default=1, metadata=limits(min=1, max=32))
    queue_pairs: int = field(default=0, metadata=limits(min=0, max=1000))
    queue_admin: str | None = None
    start_adapter: str | None = None
    start_tag_encoder: str | None = None  # round 1's tag encoder (needs training.tag_encoder.enabled)
    # segments of a paired candidate with P(failure) at least this are failure marks; None: the reward model's warn_failure
    failure_mark: float | None = field(default=None, metadata=limits(min=0.0, max=1.0))
    objective: Literal["dpo", "rwr"] = "dpo"  # pairs by reward margin, or every candidate weighed by reward
    eval_suite: str | None = None  # an eval suite file (or "builtin"): its prompts judge parent vs new adapter
    generation: LoopGeneration = field(default_factory=LoopGeneration)


def load_loop_config(path: Path | str, data_dir: Path | None = None) -> tuple[LoopConfig, dict[str, Any]]:
    """The loop config and its ``training:`` section (a DPO training config without data/model). Paths are
    relative to the file, or written `{data_dir}/...` for the studio's data folder (`data_dir`)."""
    from ..core.pks import load_yaml_text
    from ..core.settings import expand_data_dir

    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequest("config", f"{path} does not exist or is not a file")
    data = load_yaml_text(path.read_text(encoding="utf-8"), f"config {path}", "config")
    if not isinstance(data, dict):
        raise InvalidRequest("config", f"{path} must hold a mapping of settings")
    training = data.pop("training", None) or {}
    if not isinstance(training, dict):
        raise InvalidRequest("training", "must be a mapping (a training config's adapter/optimizer/train/dpo)")
    training = {k: {n: expand_data_dir(v, data_dir) for n, v in part.items()} if isinstance(part, dict) else part
                for k, part in training.items()}  # e.g. adapter.init_from: "{data_dir}/training/..."
    for key in ("model", "output_dir", "data"):
        if key in training:
            raise InvalidRequest(f"training.{key}", "is set by the loop (the round's pairs and folders)")
    dpo = training.get("dpo")
    if isinstance(dpo, dict) and dpo.get("deformations") is not None:
        raise InvalidRequest("training.dpo.deformations", "is set by the loop (the reward model's failure marks)")
    cfg = build(LoopConfig, data)
    base = path.parent.resolve()

    def resolve(p: str | None) -> str | None:
        return None if p is None else str((base / Path(expand_data_dir(p, data_dir)).expanduser()).resolve())

    from ..core.registry import REGISTRY

    cfg = LoopConfig(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
                        "output_dir": resolve(cfg.output_dir), "reward_model": resolve(cfg.reward_model),
                        "start_adapter": resolve(cfg.start_adapter),
                        "start_tag_encoder": resolve(cfg.start_tag_encoder),
                        "eval_suite": cfg.eval_suite if cfg.eval_suite in (None, "builtin") else resolve(cfg.eval_suite),
                        "model": cfg.model if cfg.model in REGISTRY else resolve(cfg.model)})
    if not Path(cfg.reward_model).is_dir():
        raise InvalidRequest("reward_model", f"{cfg.reward_model} is not a folder")
    if cfg.queue_pairs and not cfg.queue_admin:
        raise InvalidRequest("queue_admin", "name the admin account that queues pairs for the animators")
    check_tag_encoder_keys(cfg.model, cfg.start_tag_encoder, training)
    _training_config(cfg, training, Path(cfg.output_dir) / "check", Path(cfg.output_dir) / "pairs.jsonl", None, None)
    if cfg.eval_suite is not None:  # a suite that cannot run stops here
        _loop_suite(cfg, (None, None), (str(Path(cfg.output_dir) / "check"), None))
    return cfg, training


Weights = tuple[str | None, str | None]  # (adapter, tag encoder) folders; None: none


def _loop_suite(cfg: LoopConfig, parent: Weights, new: Weights) -> Any:
    """The eval suite of a round: the file's prompts and seeds, the loop's generation settings under
    the suite's own, and two systems on the loop's model: the parent adapter and tag encoder (or
    none) and the new ones."""
    from dataclasses import asdict

    from ..core.requests import AdapterRef
    from ..eval.suite import load_suite
    from ..eval.systems import System

    systems = tuple(System(name, cfg.model, (AdapterRef(adapter),) if adapter else (), tag_encoder)
                    for name, (adapter, tag_encoder) in (("parent", parent), ("adapter", new)))
    try:
        return load_suite(str(cfg.eval_suite), systems=systems, generation=asdict(cfg.generation))
    except InvalidRequest as exc:
        raise InvalidRequest("eval_suite", f"{exc.field}: {exc.reason}") from None


def _suite_eval(cfg: LoopConfig, r: "_Round", runner: Any, new: Weights) -> dict[str, Any]:
    """The eval runner on the round's suite (resumes like `eval run`), and parent vs adapter per metric."""
    import sys

    from ..eval.compare import compare_items, system_values
    from ..eval.report import write_report
    from ..eval.runner import EvalRunner
    from ..eval.state import RunFolder

    suite = _loop_suite(cfg, (r.parent, r.parent_te), new)
    folder = RunFolder(r.folder / f"eval-{Path(cfg.output_dir).name}-round-{r.index:03d}"[:64])
    summary = EvalRunner(runner, suite, folder, stream=sys.stderr).run()  # a line per clip, with the ETA
    r.log(f"round {r.index}: eval suite {suite.name}: {summary.total} clips, {summary.generated} generated, "
          f"{summary.failed} failed")
    write_report(folder)
    compared = compare_items(system_values(folder, "parent"), system_values(folder, "adapter"))
    return {"suite": suite.name, "run": str(folder.root), "clips": summary.total, "failed": summary.failed,
            "pairs": compared["pairs"], "metrics": compared["metrics"]}


def _training_config(cfg: LoopConfig, training: dict[str, Any], out: Path, pairs: Path, parent: str | None,
                     parent_te: str | None, marks: Path | None = None) -> Any:
    from .config import parse_config

    g = cfg.generation
    raw = json.loads(json.dumps(training))  # a deep copy
    raw.update(model=cfg.model, output_dir=str(out))
    raw["data"] = {"manifest": str(pairs), "num_frames": g.num_frames, "fps": g.fps, "base_size": [g.width, g.height]}
    if cfg.objective == "rwr":  # the candidates as a clip manifest, their utilities as the scores
        rwr = raw.pop("rwr", None) or {}
        raw.pop("dpo", None)
        raw["rwr"] = {**rwr, "scores": str(pairs.parent / "scores.jsonl")}
        raw["data"]["manifest"] = str(pairs.parent / "clips.jsonl")
    else:
        raw.setdefault("dpo", {})
        if marks is not None:  # the reward model's failure marks: frame weights of the DPO loss
            raw["dpo"]["deformations"] = str(marks)
    raw.setdefault("curriculum", {"enabled": False})
    raw.setdefault("train", {}).setdefault("max_steps", 20)
    raw.setdefault("validation", {"every": 0})
    if parent is not None:
        raw.setdefault("adapter", {})["init_from"] = parent
    if parent_te is not None:
        raw["tag_encoder"]["init_from"] = parent_te  # present: only a round that trains one has a parent_te
    try:
        return parse_config(raw)
    except InvalidRequest as exc:
        raise InvalidRequest(f"training.{exc.field}", exc.reason) from None


# ------------------------------------------------------------------------------------ a round
class _Round:
    def __init__(self, cfg: LoopConfig, training: dict[str, Any], settings: Settings, log: Callable[[str], None]):
        self.cfg, self.training, self.settings, self.log = cfg, training, settings, log
        self.root = Path(cfg.output_dir) / "rounds"
        done = sorted(p for p in self.root.glob("round-*") if (p / "report.json").is_file())
        started = sorted(self.root.glob("round-*"))
        self.index = len(done) + 1 if not started or (started[-1] / "report.json").is_file() else len(started)
        self.folder = self.root / f"round-{self.index:03d}"
        self.folder.mkdir(parents=True, exist_ok=True)
        state_file = self.folder / "state.json"
        self.state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
        self.parent_te: str | None
        if self.index == 1:
            self.parent = cfg.start_adapter
            self.parent_te = start_tag_encoder(cfg.model, cfg.start_tag_encoder, training, settings)
        else:
            prev = json.loads((self.root / f"round-{self.index - 1:03d}" / "report.json").read_text())
            # A round that no longer trains a tag encoder generates without one, as it trains.
            self.parent, self.parent_te = prev["adapter"], prev.get("tag_encoder") if trains_tag_encoder(training) else None
        self.batch = f"loop:{Path(cfg.output_dir).name}:round-{self.index:03d}"

    def save(self) -> None:
        write_json(self.folder / "state.json", self.state, indent=2)

    def request(self, prompt: LoopPrompt, seed: int, weights: Weights) -> Any:
        from ..core.requests import AdapterRef, GenerationRequest

        g = self.cfg.generation
        adapter, tag_encoder = weights
        return GenerationRequest(narrative=prompt.narrative, model=self.cfg.model, tags=dict(prompt.tags), seed=seed,
                                 width=g.width, height=g.height, num_frames=g.num_frames, fps=g.fps, steps=g.steps,
                                 guidance=g.guidance, adapters=(AdapterRef(adapter),) if adapter else (),
                                 tag_encoder=tag_encoder)

    def generate(self, runner: Any, scorer: Any, request: Any, source: str) -> dict[str, Any]:
        # A round stopped between a clip and its line in state.json finds that clip in the history.
        taken = {int(c["history_id"]) for rows in self.state.get("candidates", {}).values() for c in rows}
        taken |= {int(c["history_id"]) for name in ("eval_before", "eval_after") for c in self.state.get(name, [])}
        record = runner.finished_like(request, batch=self.batch, exclude=taken)
        if record is None or record.source != source:
            record = runner.run_queued(runner.submit(request, source=source, batch=self.batch))
        score = scorer.score_record(record)
        return {"history_id": record.id, "seed": request.seed, "video": str(runner.studio.history.video_path(record)),
                "utility": utility(score), "reward": score.reward, "p_failure": score.p_failure,
                "p_intentional": score.p_intentional, "score": score.to_dict()}


def run_round(cfg: LoopConfig, training: dict[str, Any], settings: Settings,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the next round; returns its report (see the module docstring)."""
    from ..core.registry import resolve_model
    from ..reward.history import HistoryScorer
    from ..reward.model import RewardModel
    from ..runner import GPU_LOCK, JobRunner
    from ..studio import Studio

    r = _Round(cfg, training, settings, log)
    reward_model = RewardModel.load(cfg.reward_model)
    reward_model.check_generator(resolve_model(cfg.model).family.name)
    studio = Studio(settings)
    try:
        runner = JobRunner(studio)
        scorer = HistoryScorer(studio.db, settings.media_dir, reward_model)
        cands: dict[str, list[dict[str, Any]]] = r.state.setdefault("candidates", {})
        for p, prompt in enumerate(cfg.prompts):
            have = cands.setdefault(str(p), [])
            for k in range(len(have), cfg.candidates):
                seed = cfg.seed + 1000 * r.index + 100 * p + k
                have.append(r.generate(runner, scorer, r.request(prompt, seed, (r.parent, r.parent_te)), "loop"))
                r.save()
        log(f"round {r.index}: {sum(len(v) for v in cands.values())} candidates scored by {reward_model.key}")
        pairs_file, marks_file = r.folder / "pairs.jsonl", r.folder / "marks.jsonl"
        if "pairs" not in r.state:
            r.state["pairs"] = _write_pairs(cfg, cands, pairs_file)
            threshold = reward_model.config.warn_failure if cfg.failure_mark is None else cfg.failure_mark
            r.state["marks"] = len(write_marks(failure_marks(r.state["pairs"], cands, threshold), marks_file))
            if cfg.objective == "rwr":
                r.state["pairs"], r.state["marks"] = _write_scored(cfg, cands, r.folder), 0
            r.save()
        if not r.state["pairs"]:
            raise InvalidRequest("min_margin", f"round {r.index}: no candidate pair differs by {cfg.min_margin} in "
                                               "utility; lower min_margin or raise candidates")
        if "train" not in r.state:
            from .dpo import DPOTrainer
            from .rwr import RWRTrainer

            config = _training_config(cfg, training, r.folder / "train", pairs_file, r.parent, r.parent_te,
                                      marks_file if r.state.get("marks") else None)
            trainer = RWRTrainer if cfg.objective == "rwr" else DPOTrainer
            runner.free_memory()  # the generator's pipeline makes room for the trainer's
            with GPU_LOCK:
                result = trainer(config, settings, show_progress=False).run(resume="auto")
            assert result.adapter_dir is not None
            tag_encoder = trained_tag_encoder(result.adapter_dir)
            write_json(result.adapter_dir.parent / "provenance.json",
                       {"round": r.index, "parent_adapter": r.parent, "parent_tag_encoder": r.parent_te,
                        "tag_encoder": tag_encoder, "pairs": str(pairs_file)}, indent=2)
            r.state["train"] = {"adapter": str(result.adapter_dir), "tag_encoder": tag_encoder, "steps": result.steps,
                                "first_loss": result.losses[0][1] if result.losses else None,
                                "last_loss": result.losses[-1][1] if result.losses else None}
            r.save()
        adapter, tag_encoder = r.state["train"]["adapter"], r.state["train"].get("tag_encoder")
        held = cfg.heldout or cfg.prompts
        for name, which in (("before", (r.parent, r.parent_te)), ("after", (adapter, tag_encoder))):
            rows = r.state.setdefault(f"eval_{name}", [])
            for p in range(len(rows), len(held)):
                rows.append(r.generate(runner, scorer, r.request(held[p], cfg.seed + 7 + p, which), "loop_eval"))
                r.save()
        if cfg.eval_suite is not None and "suite_eval" not in r.state:
            r.state["suite_eval"] = _suite_eval(cfg, r, runner, (adapter, tag_encoder))
            r.save()
        if "queued" not in r.state:
            r.state["queued"] = _queue(cfg, studio, cands, settings)
            r.save()
    finally:
        studio.close()
    report = {"round": r.index, "parent_adapter": r.parent, "adapter": adapter, "parent_tag_encoder": r.parent_te,
              "tag_encoder": tag_encoder, "batch": r.batch, "candidates": sum(len(v) for v in cands.values()),
              "pairs": len(r.state["pairs"]), "failure_marks": r.state.get("marks", 0),
              "train": r.state["train"], "heldout": {n: _summary(r.state[f"eval_{n}"]) for n in ("before", "after")},
              "queued_pairs": r.state["queued"], **({"eval": r.state["suite_eval"]} if "suite_eval" in r.state else {}),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(r.folder / "report.json", report, indent=2)  # the round is done once this exists
    return report


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = max(1, len(rows))
    return {k: sum(float(x[k]) for x in rows) / n for k in ("utility", "reward", "p_failure", "p_intentional")}


def _write_pairs(cfg: LoopConfig, cands: Mapping[str, list[dict[str, Any]]], out: Path) -> list[dict[str, Any]]:
    rows = []
    for p, have in cands.items():
        prompt = cfg.prompts[int(p)]
        ranked = sorted(have, key=lambda c: (-c["utility"], c["seed"]))
        for i in range(min(cfg.pairs_per_prompt, len(ranked) // 2)):
            w, lo = ranked[i], ranked[-1 - i]
            margin = w["utility"] - lo["utility"]
            if margin < cfg.min_margin or margin <= 0:
                continue
            rows.append({"prompt": prompt.narrative, "chosen": w["video"], "rejected": lo["video"],
                         "chosen_generation_id": w["history_id"], "rejected_generation_id": lo["history_id"],
                         "dimension": "reward", "strength": 1, "margin": margin,
                         "tags": json.dumps({k: list(v) for k, v in prompt.tags.items()}, sort_keys=True)})
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def _write_scored(cfg: LoopConfig, cands: Mapping[str, list[dict[str, Any]]], folder: Path) -> list[dict[str, Any]]:
    """Flow-RWR: every candidate (clips.jsonl) with its utility (scores.jsonl)."""
    clips, scores = [], []
    for p, have in cands.items():
        prompt = cfg.prompts[int(p)]
        tags = {k: list(v) for k, v in prompt.tags.items()}
        for c in have:
            clips.append({"clip": c["video"], "caption": prompt.narrative, "tags": tags, "clip_id": str(c["history_id"])})
            scores.append({"video": c["video"], "utility": c["utility"]})
    for name, rows in (("clips.jsonl", clips), ("scores.jsonl", scores)):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return scores


def _queue(cfg: LoopConfig, studio: Any, cands: Mapping[str, list[dict[str, Any]]], settings: Settings) -> list[int]:
    """The candidate pairs the reward model is least sure of, as rating pairs for the animators."""
    if not cfg.queue_pairs:
        return []
    from itertools import combinations

    from ..rating.service import RatingService
    from ..reward.queue import pair_uncertainty
    from ..reward.types import RewardScore

    ranked = []
    for have in cands.values():
        for a, b in combinations(have, 2):
            u = pair_uncertainty(RewardScore.from_dict(a["score"]), RewardScore.from_dict(b["score"]))
            ranked.append((u, a["history_id"], b["history_id"]))
    service = RatingService(studio.db, settings.media_dir)
    admin = service.rater_by_name(str(cfg.queue_admin))
    return [service.pick_pair(admin, a, b).id for _, a, b in sorted(ranked)[:cfg.queue_pairs]]


# ----------------------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`loop round CONFIG.yaml`: one on-policy round (resumes an unfinished one)."""
    p = subparsers.add_parser("loop", help="on-policy preference rounds: generate, score, pair, DPO, evaluate",
                              allow_abbrev=False)
    sub = p.add_subparsers(dest="loop_command", required=True)
    r = sub.add_parser("round", help="run the next round (or finish an interrupted one)", allow_abbrev=False)
    r.add_argument("config", type=Path, help="loop config (YAML); see docs/preference.md")
    r.add_argument("--json", action="store_true", help="print the round report as JSON")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    cfg, training = load_loop_config(args.config, settings.data_dir)
    report = run_round(cfg, training, settings, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    before, after = report["heldout"]["before"], report["heldout"]["after"]
    print(f"round {report['round']}: {report['pairs']} pairs from {report['candidates']} candidates; "
          f"adapter {report['adapter']} (parent {report['parent_adapter'] or 'base'})")
    print(f"held-out utility {before['utility']:+.3f} -> {after['utility']:+.3f}, "
          f"P(failure) {before['p_failure']:.3f} -> {after['p_failure']:.3f}; "
          f"{len(report['queued_pairs'])} pairs queued for animators")
    if "eval" in report:
        ev = report["eval"]
        moved = [f"{m['label']} {m['verdict'].removeprefix('B ')}" for m in ev["metrics"].values()
                 if m["verdict"] != "no significant difference"]
        print(f"eval suite {ev['suite']} ({ev['pairs']} prompt-seed pairs, report in {ev['run']}): "
              f"{'; '.join(moved) if moved else 'no metric changed significantly'} (adapter vs parent)")
    return 0
