"""The curation pipeline: stages, resumable state, worker processes, progress.

`Curator(config).run()` runs every stage; `run(stages=[...])` runs some (each stage reads what
earlier stages stored, so `motion` alone works after `clips` ran in an earlier process).
Per-item work runs in `workers` spawn processes (`ProcessPoolExecutor`); results are written
to the state store by the parent as each item finishes, so a killed run loses at most the
items in flight and a re-run skips what is done. Captioning runs in the parent process (one
VLM in memory, usually on the GPU). Output order never depends on completion order: rows are
sorted by source name and start time, so serial and parallel runs give the same manifest.
"""
from __future__ import annotations

import functools
import os
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..core.errors import EngineError, InvalidRequest
from ..core.settings import Settings
from . import jobs as per_item
from . import manifest as mf
from .aesthetic import AestheticScorer, make_scorer, sample_indices
from .caption import Captioner, TaxonomyCaptioner
from .executors import _WORKER, ItemFailed, RayPool, _in_worker, _init_worker, local_pool
from .explain import admission_hints
from .config import STAGES, CurationConfig
from .ingest import Candidate, SourceInfo, content_id, discover
from .rows import build_rows
from .selection import Borders, decide
from . import source_pass
from .shots import ClipPlan, ShotPlan
from .state import StateStore, write_json_atomic

# Per-item work lives in jobs.py; the stages look these names up here at call time (tests patch them).
_ingest_one, _shots_one, _cut_one = per_item.ingest_one, per_item.shots_one, per_item.cut_one
_motion_one, _aesthetic_one = per_item.motion_one, per_item.aesthetic_one


@dataclass
class CurationResult:
    """What a run produced; `work` counts the items computed (not loaded from state) per stage."""

    output_dir: Path
    rows: list[dict[str, Any]]
    report: dict[str, Any]
    work: Counter[str] = field(default_factory=Counter)

    @property
    def manifest_jsonl(self) -> Path:
        return self.output_dir / "manifest.jsonl"

    @property
    def manifest_parquet(self) -> Path:
        return self.output_dir / "manifest.parquet"


class Curator:
    """One curation run over `config.input` into `config.output_dir` (module docstring).

    `aesthetic_scorer` / `captioner` replace the ones the config names (tests, custom models);
    a scorer must be picklable when `workers` > 1.
    """

    def __init__(self, config: CurationConfig, settings: Settings | None = None, *,
                 aesthetic_scorer: AestheticScorer | None = None, captioner: Captioner | None = None) -> None:
        self.config = config
        self.settings = settings or Settings.from_env()
        self.out = config.out
        self.store = StateStore(config.state or self.out / "state")
        self.scorer = aesthetic_scorer if aesthetic_scorer is not None else make_scorer(
            config.aesthetic, self.settings.models_dir, self.settings.hf_cache_dir)
        self._captioner = captioner
        self.work: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.unreadable: list[dict[str, str]] = []
        self.failed: list[dict[str, str]] = []
        self.sources: list[SourceInfo] = []
        self.plans: list[ShotPlan] = []
        self.cuts: dict[str, dict[str, Any]] = {}
        self.analysis: dict[str, dict[str, Any]] = {}
        self.aesthetics: dict[str, float | None] = {}
        self.decisions: dict[str, Any] = {}
        self.captions: dict[str, dict[str, Any]] = {}
        self._pool: Any = None  # ProcessPoolExecutor or RayPool
        self._computing: set[str] = set(STAGES)  # stages that compute this run (run() narrows it)
        self._pending_cuts: dict[str, Future[dict[str, Any]]] = {}  # cuts still running beside the motion stage
        self._cut_done: Callable[[str, dict[str, Any]], None] | None = None

    # ---------------------------------------------------------------------------- plumbing
    @property
    def taxonomy(self) -> Any:
        from ..core.pks import load_taxonomy

        return load_taxonomy(self.config.taxonomy)

    def captioner(self) -> Captioner | None:
        if self._captioner is None and self.config.caption.captioner != "none":
            from .vlm import TransformersVLM

            c = self.config.caption
            backend = TransformersVLM(c.model, device=c.device, max_new_tokens=c.max_new_tokens,
                                      cache_dir=self.settings.hf_cache_dir, name=c.captioner)
            self._captioner = TaxonomyCaptioner(backend, self.taxonomy)
        return self._captioner

    def _map(self, stage: str, fn: Callable[..., dict[str, Any]], jobs: Sequence[tuple[str, tuple[Any, ...]]],
             done: Callable[[str, dict[str, Any]], None], *, parallel: bool = True) -> None:
        """Run `fn(*args)` per job, serially or in spawn workers; `done` stores each result as it
        arrives. An item that raises is listed as failed; the run goes on."""
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=stage, unit="item", disable=not self.config.progress or not jobs,
                   dynamic_ncols=True, leave=True)
        workers = min(self.config.workers, len(jobs)) if parallel else 1
        try:
            if workers <= 1 and not (parallel and self.config.executor == "ray" and jobs):
                _WORKER.update({"scorer": self.scorer})
                for key, args in jobs:
                    self._finish(stage, key, functools.partial(fn, *args), done)
                    bar.update()
                return
            pool = self._executor()
            futures = {pool.submit(_in_worker, fn, *args): key for key, args in jobs}
            try:
                for fut in as_completed(futures):
                    self._finish(stage, futures[fut], fut.result, done)
                    bar.update()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        finally:
            bar.close()

    def _executor(self) -> Any:
        """One pool per run, shared by the stages (a worker starts in ~1 s; do it once): spawn
        processes, or Ray tasks (engine/curation/executors.py)."""
        if self._pool is None:
            objects = {"scorer": self.scorer}
            self._pool = (RayPool(self.config.ray_address, objects) if self.config.executor == "ray"
                          else local_pool(self.config.workers, objects, _init_worker))
        return self._pool

    def close(self) -> None:
        # A run stopped early: cuts not started stay undone; the ones in flight (one per cut thread)
        # finish and are stored, so nothing writes into the state after the run has returned.
        running = [f for f in self._pending_cuts.values() if not f.cancel()]
        futures_wait(running)
        self._pending_cuts = {}
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _finish(self, stage: str, key: str, get: Callable[[], dict[str, Any]],
                done: Callable[[str, dict[str, Any]], None]) -> None:
        try:
            result = get()
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory): not the item's fault
            raise EngineError(f"a {stage} worker process died ({exc}); lower `workers` or check memory, "
                              "then run again: finished work is kept") from None
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the run
            text = exc.reason if isinstance(exc, InvalidRequest) else str(exc) if isinstance(exc, ItemFailed) \
                else f"{type(exc).__name__}: {exc}"
            self.failed.append({"stage": stage, "item": key, "error": " ".join(text.split())[:300]})
            return
        self.work[stage] += 1
        done(key, result)

    # ------------------------------------------------------------------------------ stages
    def run(self, stages: Sequence[str] | None = None) -> CurationResult:
        chosen = list(STAGES) if not stages else list(stages)
        for s in chosen:
            if s not in STAGES:
                raise InvalidRequest("stages", f"unknown stage '{s}'; stages: {', '.join(STAGES)}")
        self.preflight(chosen)
        self.out.mkdir(parents=True, exist_ok=True)
        self._computing = set(chosen)
        try:
            for s in STAGES[:-1]:  # earlier stages load their stored results even when not chosen
                getattr(self, f"stage_{s}")(compute=s in chosen)
        finally:
            self.close()
        if "manifest" in chosen:
            return self.manifest()
        return CurationResult(self.out, self.build_rows(), {"counts": dict(self.counts)}, self.work)

    def preflight(self, stages: Sequence[str]) -> None:
        """Fail before any work on a bad input path or a missing model a chosen stage needs."""
        if not self.config.input.paths:
            raise InvalidRequest("input.paths", "name at least one folder or file of videos")
        for i, raw in enumerate(self.config.input.paths):
            if not Path(raw).expanduser().exists():
                raise InvalidRequest(f"input.paths[{i}]", f"{raw} is neither a folder nor a file")
        if "aesthetic" in stages and self.scorer is not None:
            self.scorer.check()
        if "caption" in stages and self.captioner() is not None:
            self.captioner().check()  # type: ignore[union-attr]

    def stage_ingest(self, compute: bool = True) -> None:
        cfg = self.config.input
        if not cfg.paths:
            raise InvalidRequest("input.paths", "name at least one folder or file of videos")
        candidates = discover(cfg.paths, cfg.extensions, cfg.recursive)
        self.counts["files_found"] = len(candidates)
        jobs: list[tuple[str, tuple[Any, ...]]] = []
        found: dict[str, dict[str, Any]] = {}
        names: dict[str, Candidate] = {}
        for cand in candidates:
            try:
                cid = content_id(cand.path)
            except OSError as exc:
                self.unreadable.append({"file": cand.name, "error": exc.strerror or str(exc)})
                continue
            if cid in names:
                self.counts["duplicates"] += 1
                continue
            names[cid] = cand
            stored = self.store.load("ingest", cid, f"{cand.path}|{cand.name}")
            if stored is not None:
                found[cid] = stored
            elif compute:
                jobs.append((cid, (cand,)))

        def done(cid: str, result: dict[str, Any]) -> None:
            self.store.save("ingest", cid, f"{names[cid].path}|{names[cid].name}", result)
            found[cid] = result

        self._map("ingest", _ingest_one, jobs, done)
        for item in [f for f in self.failed if f["stage"] == "ingest"]:
            self.unreadable.append({"file": names[item["item"]].name, "error": item["error"]})
        self.failed = [f for f in self.failed if f["stage"] != "ingest"]
        self.sources = sorted((SourceInfo.from_dict(found[c]) for c in found), key=lambda s: (s.name, s.path))
        self.counts["sources"] = len(self.sources)
        self.counts["unreadable"] = len(self.unreadable)

    def stage_shots(self, compute: bool = True) -> None:
        fp = self.config.stage_fingerprint("shots")
        plans: dict[str, ShotPlan] = {}
        jobs = []
        for src in self.sources:
            stored = self.store.load("shots", src.source_id, fp)
            if stored is not None:
                plans[src.source_id] = ShotPlan.from_dict(stored)
            elif compute:
                jobs.append((src.source_id, (src.to_dict(), self.config)))

        def done(sid: str, result: dict[str, Any]) -> None:
            self.store.save("shots", sid, fp, result)
            plans[sid] = ShotPlan.from_dict(result)

        self._map("shots", _shots_one, jobs, done)
        self.plans = [plans[s.source_id] for s in self.sources if s.source_id in plans]
        self.counts["shots"] = sum(len(p.shots) for p in self.plans)
        self.counts["shots_too_short"] = sum(p.short_shots for p in self.plans)
        self.counts["clips_planned"] = sum(len(p.clips) for p in self.plans)
        self.counts["clips_dropped_no_keyframe"] = sum(p.dropped for p in self.plans)

    def _clip_path(self, clip_id: str) -> Path:
        return self.out / "clips" / f"{clip_id}.mp4"

    def _plans(self) -> list[tuple[SourceInfo, ClipPlan]]:
        by_id = {s.source_id: s for s in self.sources}
        return [(by_id[p.source_id], c) for p in self.plans for c in p.clips]

    @property
    def from_source(self) -> bool:
        return self.config.clips.cut == "selected"  # analysed from the sources, cut after selection

    def stage_clips(self, compute: bool = True) -> None:
        if self.from_source:
            return source_pass.load_cuts(self)
        fp = self.config.stage_fingerprint("clips")
        jobs = []
        for src, plan in self._plans():
            stored = self.store.load("clips", plan.clip_id, fp)
            if stored is not None and self._clip_path(plan.clip_id).is_file():
                self.cuts[plan.clip_id] = stored
            elif compute:
                jobs.append((plan.clip_id, (src.path, plan.to_dict(), str(self._clip_path(plan.clip_id)),
                                            self.config.clips.crf)))

        def done(cid: str, result: dict[str, Any]) -> None:
            self.store.save("clips", cid, fp, result)
            self.cuts[cid] = result

        if jobs and self._serial(len(jobs)) and "motion" in self._computing:
            # One process: the x264 cuts (external ffmpeg processes) run on the other cores while the
            # motion stage analyses the clips already cut, in plan order (docs/curation.md, "Speed").
            # Each cut is stored the moment it is written (one atomic file per clip), so a run stopped
            # during the motion stage redoes only the cuts that had not finished.
            def cut_and_store(cid: str, args: tuple[Any, ...]) -> dict[str, Any]:
                result = _cut_one(*args)
                self.store.save("clips", cid, fp, result)
                return result

            cutters = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="cut")
            self._pending_cuts = {cid: cutters.submit(cut_and_store, cid, args) for cid, args in jobs}
            cutters.shutdown(wait=False)
            self._cut_done = self.cuts.__setitem__
            return
        self._map("clips", _cut_one, jobs, done)
        self._count_cuts()

    def _serial(self, n_jobs: int) -> bool:
        """Whether `_map` would run these jobs in this process (what `_map` decides, said once)."""
        return min(self.config.workers, n_jobs) <= 1 and self.config.executor != "ray"

    def _count_cuts(self) -> None:
        self.counts["clips_cut"] = len(self.cuts)
        self.counts["clips_stream_copied"] = sum(1 for c in self.cuts.values() if c["copied"])

    def _await_cut(self, clip_id: str) -> None:
        """Store a cut that ran beside the motion stage (listed as failed like any cut, if it failed)."""
        future = self._pending_cuts.pop(clip_id, None)
        if future is not None and self._cut_done is not None:
            self._finish("clips", clip_id, future.result, self._cut_done)
        if not self._pending_cuts:
            self._count_cuts()

    def _aesthetic_fingerprint(self) -> str:
        assert self.scorer is not None
        return self.config.stage_fingerprint("aesthetic") + f"-{self.scorer.name}"

    def _store_motion(self, cid: str, result: dict[str, Any], fp: str, afp: str) -> None:
        """A clip's motion result, and the aesthetic result its decode also gave (when it did)."""
        aesthetic = result.pop("aesthetic_result", None)
        result.pop("aesthetic_error", None)  # the aesthetic stage retries the clip on its own
        self.store.save("motion", cid, fp, result)
        self.analysis[cid] = result
        if aesthetic is not None:
            self.store.save("aesthetic", cid, afp, aesthetic)
            self.work["aesthetic"] += 1

    def stage_motion(self, compute: bool = True) -> None:
        """Held frames, flow and borders per clip. When the aesthetic stage computes in this run
        too, each clip's aesthetic score comes from the same decode and is stored as the
        aesthetic stage's result (that stage then only loads it)."""
        if self.from_source:
            return source_pass.stage_motion(self, compute)
        fp = self.config.stage_fingerprint("motion")
        fuse = self.scorer is not None and "aesthetic" in self._computing
        afp = self._aesthetic_fingerprint() if fuse else ""

        def job(plan: ClipPlan) -> tuple[str, tuple[Any, ...]] | None:
            """The motion job of one cut clip, or None (not cut, or its result is stored)."""
            if plan.clip_id not in self.cuts:
                return None
            stored = self.store.load("motion", plan.clip_id, fp)
            if stored is not None:
                self.analysis[plan.clip_id] = stored
                return None
            if not compute:
                return None
            frames = (self.cuts[plan.clip_id]["num_frames"]
                      if fuse and self.store.load("aesthetic", plan.clip_id, afp) is None else None)
            return (plan.clip_id, (str(self._clip_path(plan.clip_id)), plan.fps, self.config,
                                   *((frames,) if frames else ())))

        def done(cid: str, result: dict[str, Any]) -> None:
            self._store_motion(cid, result, fp, afp)

        if self._pending_cuts:  # cuts still running: analyse each clip as soon as it is cut
            from tqdm import tqdm

            _WORKER.update({"scorer": self.scorer})
            plans = [plan for _, plan in self._plans()]
            with tqdm(total=len(plans), desc="clips+motion", unit="clip", disable=not self.config.progress,
                      dynamic_ncols=True) as bar:
                for plan in plans:
                    self._await_cut(plan.clip_id)
                    one = job(plan)
                    if one is not None:
                        self._finish("motion", one[0], functools.partial(_motion_one, *one[1]), done)
                    bar.update()
        else:
            jobs = [j for j in map(job, (plan for _, plan in self._plans())) if j is not None]
            self._map("motion", _motion_one, jobs, done)
        self.counts["clips_analyzed"] = len(self.analysis)

    def stage_aesthetic(self, compute: bool = True) -> None:
        if self.scorer is None or self.from_source:
            return None if self.scorer is None else source_pass.stage_aesthetic(self, compute)
        fp = self._aesthetic_fingerprint()
        jobs = []
        for _, plan in self._plans():
            if plan.clip_id not in self.cuts:
                continue
            stored = self.store.load("aesthetic", plan.clip_id, fp)
            if stored is not None:
                self.aesthetics[plan.clip_id] = stored["aesthetic"]
            elif compute:
                jobs.append((plan.clip_id, (str(self._clip_path(plan.clip_id)), self.cuts[plan.clip_id]["num_frames"],
                                            self.config.aesthetic.frames)))

        def done(cid: str, result: dict[str, Any]) -> None:
            self.store.save("aesthetic", cid, fp, result)
            self.aesthetics[cid] = result["aesthetic"]

        self._map("aesthetic", _aesthetic_one, jobs, done)
        self.counts["clips_aesthetic_scored"] = len(self.aesthetics)

    def stage_select(self, compute: bool = True) -> None:
        """Pure and cheap: always recomputed from the stored scores (nothing to resume)."""
        for src, plan in self._plans():
            a = self.analysis.get(plan.clip_id)
            cut = self.cuts.get(plan.clip_id) or ({"width": src.width, "height": src.height} if self.from_source else None)
            if a is None or cut is None or (self.scorer is not None and plan.clip_id not in self.aesthetics):
                continue
            self.decisions[plan.clip_id] = decide(
                width=cut["width"], height=cut["height"], motion=a["motion"]["score"],
                aesthetic=self.aesthetics.get(plan.clip_id), borders=Borders(**a["borders"]),
                cfg=self.config.selection)
        self.counts["clips_selected"] = sum(1 for d in self.decisions.values() if d.selected)
        if self.from_source and {"clips", "select"} & self._computing:
            source_pass.cut_selected(self)

    def stage_caption(self, compute: bool = True) -> None:
        captioner = self.captioner()
        if captioner is None:
            return
        from .media import decode_rgb

        fp = self.config.stage_fingerprint("caption") + f"-{captioner.name}"
        jobs = []
        for _, plan in self._plans():
            d = self.decisions.get(plan.clip_id)
            if d is None or (self.config.caption.only_selected and not d.selected) or plan.clip_id not in self.cuts:
                continue
            stored = self.store.load("caption", plan.clip_id, fp)
            if stored is not None:
                self.captions[plan.clip_id] = stored
            elif compute:
                jobs.append((plan.clip_id, (plan,)))

        def one(plan: ClipPlan) -> dict[str, Any]:
            n = self.cuts[plan.clip_id]["num_frames"]
            frames = decode_rgb(self._clip_path(plan.clip_id), sample_indices(n, self.config.caption.frames), 448)
            r = captioner.caption(frames, fps=plan.fps)
            return {"tags": r.tags, "narrative": r.narrative, "rejected": list(r.rejected), "asked": r.asked,
                    "model": r.model}

        def done(cid: str, result: dict[str, Any]) -> None:
            self.store.save("caption", cid, fp, result)
            self.captions[cid] = result

        self._map("caption", one, jobs, done, parallel=False)
        self.counts["clips_captioned"] = len(self.captions)
        self.counts["caption_ids_rejected"] = sum(len(c["rejected"]) for c in self.captions.values())

    # ---------------------------------------------------------------------------- manifest
    def build_rows(self) -> list[dict[str, Any]]:
        return build_rows(self)

    def manifest(self) -> CurationResult:
        rows = self.build_rows()
        mf.write_jsonl(rows, self.out / "manifest.jsonl")
        mf.write_parquet(rows, self.out / "manifest.parquet")
        sel = self.config.selection
        notes = []
        if self.scorer is None:
            notes.append("aesthetic.scorer is none: S = S_optical (no aesthetic term)")
        notes.append("text-heavy frames are not filtered: no OCR engine is available")
        if self.from_source:
            notes.append("clips.cut is selected: only the selected clips were cut (clips.cut=all cuts every clip)")
        report = {
            "manifest_version": mf.MANIFEST_VERSION,
            "counts": {**dict(self.counts), "clips_in_manifest": len(rows)},
            "reasons": dict(Counter(r["reason"] for r in rows)),
            "timing": dict(Counter(r["timing"] for r in rows)),
            "unreadable": sorted(self.unreadable, key=lambda u: u["file"]),
            "failed": sorted(self.failed, key=lambda f: (f["stage"], f["item"])),
            "computed_this_run": dict(self.work), "notes": notes,
            "hints": admission_hints(rows, self.config, self.plans, {src.source_id: src.fps for src in self.sources}),
            "config": self.config.to_dict(),
        }
        report = mf.write_report(self.out, report, rows, theta=sel.theta, min_motion=sel.min_motion,
                                 max_motion=sel.max_motion)
        return CurationResult(self.out, rows, report, self.work)


def run_curation(config: CurationConfig, settings: Settings | None = None, *, stages: Sequence[str] | None = None,
                 aesthetic_scorer: AestheticScorer | None = None, captioner: Captioner | None = None) -> CurationResult:
    """Run the pipeline (or some stages of it); see `Curator`."""
    return Curator(config, settings, aesthetic_scorer=aesthetic_scorer, captioner=captioner).run(stages)


__all__ = ["Curator", "CurationResult", "run_curation", "write_json_atomic"]
