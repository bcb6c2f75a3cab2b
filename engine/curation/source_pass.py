"""`clips.cut: selected`: analyse the clips from their source, cut only the ones selected.

With `clips.cut: all` (the default) every planned clip is cut (x264 where a stream copy is not
exact) and then decoded again for the analysis; on an archive most clips are rejected, so most of
that encoding is thrown away. Here the motion stage instead decodes each source once
(`media.decode_windows`) and analyses every clip window of it from that pass (held frames, flow,
borders and the aesthetic frames, as `jobs.motion_one` does for a cut file); the cuts happen after
the selection, for the selected clips only. Rejected clips keep their manifest row (numbers,
reason) with ``clip: null``: there is no file to watch, `--explain` and the report still work.

Resuming: a source's results are stored when its pass ends, so a kill redoes the sources in
flight; a new `selection.theta` that selects more clips cuts just those on the next run.
docs/curation.md, "Speed", has the trade-off and the figures.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from . import jobs as per_item
from .rows import CurationRun


def load_cuts(cur: CurationRun) -> None:
    """The clips stage in this mode: the cuts made by earlier runs (selected then), nothing new."""
    fp = cur.config.stage_fingerprint("clips")
    for _, plan in cur._plans():
        stored = cur.store.load("clips", plan.clip_id, fp)
        if stored is not None and cur._clip_path(plan.clip_id).is_file():
            cur.cuts[plan.clip_id] = stored


def _by_source(cur: CurationRun, todo: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """One job per source over the clips of `todo` (clip id -> plan): its pass decodes it once."""
    groups: dict[str, list[Any]] = {}
    paths = {}
    for src, plan in cur._plans():
        if plan.clip_id in todo:
            groups.setdefault(src.source_id, []).append(plan)
            paths[src.source_id] = src.path
    return [(sid, (paths[sid], [p.to_dict() for p in plans])) for sid, plans in groups.items()]


def stage_motion(cur: CurationRun, compute: bool) -> None:
    fp = cur.config.stage_fingerprint("motion")
    fuse = cur.scorer is not None and "aesthetic" in cur._computing
    afp = cur._aesthetic_fingerprint() if fuse else ""
    todo: dict[str, Any] = {}
    aesthetic_of: dict[str, int] = {}
    for _, plan in cur._plans():
        stored = cur.store.load("motion", plan.clip_id, fp)
        if stored is not None:
            cur.analysis[plan.clip_id] = stored
        elif compute:
            todo[plan.clip_id] = plan
            if fuse and cur.store.load("aesthetic", plan.clip_id, afp) is None:
                aesthetic_of[plan.clip_id] = plan.num_frames

    def done(_source: str, results: dict[str, dict[str, Any]]) -> None:
        for cid, result in results.items():
            cur._store_motion(cid, result, fp, afp)
        cur.work["motion"] += len(results) - 1  # `work` counts clips; the job was one source

    jobs = [(sid, (path, plans, cur.config, {p["clip_id"]: aesthetic_of[p["clip_id"]] for p in plans
                                             if p["clip_id"] in aesthetic_of}))
            for sid, (path, plans) in _by_source(cur, todo)]
    cur._map("motion", per_item.analyse_source, jobs, done)
    cur.counts["clips_analyzed"] = len(cur.analysis)


def stage_aesthetic(cur: CurationRun, compute: bool) -> None:
    """Clips whose motion is stored but whose aesthetic is not (another scorer): from the source."""
    fp = cur._aesthetic_fingerprint()
    todo: dict[str, Any] = {}
    for _, plan in cur._plans():
        stored = cur.store.load("aesthetic", plan.clip_id, fp)
        if stored is not None:
            cur.aesthetics[plan.clip_id] = stored["aesthetic"]
        elif compute:
            todo[plan.clip_id] = plan

    def done(_source: str, results: dict[str, dict[str, Any]]) -> None:
        stored = 0
        for cid, result in results.items():
            if "aesthetic_result" in result:
                cur.store.save("aesthetic", cid, fp, result["aesthetic_result"])
                cur.aesthetics[cid] = result["aesthetic_result"]["aesthetic"]
                stored += 1
            else:
                cur.failed.append({"stage": "aesthetic", "item": cid, "error": result.get("aesthetic_error", "?")})
        cur.work["aesthetic"] += stored - 1

    jobs = [(sid, (path, plans, cur.config, {p["clip_id"]: p["end"] - p["start"] for p in plans}, False))
            for sid, (path, plans) in _by_source(cur, todo)]
    cur._map("aesthetic", per_item.analyse_source, jobs, done)
    cur.counts["clips_aesthetic_scored"] = len(cur.aesthetics)


def cut_selected(cur: CurationRun) -> None:
    """After the selection: cut the selected clips that have no file yet."""
    fp = cur.config.stage_fingerprint("clips")
    jobs = [(plan.clip_id, (src.path, plan.to_dict(), str(cur._clip_path(plan.clip_id)), cur.config.clips.crf))
            for src, plan in cur._plans()
            if plan.clip_id not in cur.cuts and getattr(cur.decisions.get(plan.clip_id), "selected", False)]

    def done(cid: str, result: dict[str, Any]) -> None:
        cur.store.save("clips", cid, fp, result)
        cur.cuts[cid] = result

    if jobs and cur._serial(len(jobs)):
        # One process: each cut is an ffmpeg process of one thread, so run one per core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="cut") as cutters:
            futures = {cutters.submit(per_item.cut_one, *args): cid for cid, args in jobs}
            for fut in as_completed(futures):
                cur._finish("clips", futures[fut], fut.result, done)
    else:
        cur._map("clips", per_item.cut_one, jobs, done)
    cur._count_cuts()
