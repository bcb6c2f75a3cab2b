"""`eval run`: generate every (system, prompt, seed) of a suite through the job runner and score it.

Each clip goes through `JobRunner.generate(request, source="eval", batch="eval:<run id>")`, the
one path every generation takes, so it lands in the history tagged with its run
(`history.list(batch=...)`). After each clip its scores are written into the shard's state
file (atomically). A restarted run skips what is finished: items in any state file of the
run, and clips the history already holds for this run with the very same request (a kill
between the clip's save and the state write loses no work).

Before the first clip, every system's request is prepared by the engine (model, weights,
adapters, tag encoder, shapes), so a suite that cannot run stops with one line, having
generated nothing. Shards (`--shard I/N`) take every N-th item from the I-th on.

Learned metrics (engine/eval/learned.py) are checked and loaded before that too, score every clip
after its pixel metrics, and are added to finished clips that lack them (or were scored by other
weights) without regenerating: such an item is rewritten with `rev` one higher, so it wins over
older copies of it in other state files or results.json.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TextIO

from ..core.errors import EngineError, GenerationCancelled, InvalidRequest
from ..core.generation import CancelToken
from ..core.requests import GenerationRequest
from ..runner import JobRunner
from .learned import LearnedMetric, learned_scores, needs_learned, require_ready
from .metrics.score import MetricConfig, score_file
from .state import RunFolder, item_key
from .suite import Prompt, Suite
from .systems import System

# request fields that make two clips the same clip (everything the suite decides)
@dataclass(frozen=True)
class RunSummary:
    run_id: str
    total: int  # items of this shard
    generated: int  # clips made now
    reused: int  # found finished (state file or history)
    failed: int
    rescored: int = 0  # finished clips given learned scores they lacked


def batch_label(run_id: str) -> str:
    return f"eval:{run_id}"


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class EvalRunner:
    def __init__(self, runner: JobRunner, suite: Suite, folder: RunFolder, *, shard: tuple[int, int] = (1, 1),
                 metrics: MetricConfig | None = None, stream: TextIO | None = None,
                 cancel: CancelToken | None = None, learned: Sequence[LearnedMetric] = ()) -> None:
        self.runner = runner
        self.history = runner.history
        self.suite = suite
        self.folder = folder
        self.shard = shard
        self.metrics = metrics or MetricConfig()
        self.stream = stream if stream is not None else sys.stderr
        self.cancel = cancel
        self.learned = tuple(learned)

    @property
    def batch(self) -> str:
        return batch_label(self.folder.run_id)

    def my_items(self) -> list[tuple[System, Prompt, int]]:
        i, n = self.shard
        return [item for k, item in enumerate(self.suite.items()) if k % n == i - 1]

    def preflight(self) -> None:
        """Prepare each system's first request: a suite that cannot run fails here, before any clip."""
        prompt = self.suite.prompts[0]
        for i, system in enumerate(self.suite.systems):
            request = system.request(prompt.narrative, prompt.tags, prompt.seeds[0], self.suite.generation)
            try:
                self.runner.studio.prepare(request)
            except InvalidRequest as exc:
                raise InvalidRequest(self.suite.where(f"systems[{i}].{exc.field}"), exc.reason) from None
            except EngineError as exc:
                raise InvalidRequest(self.suite.where(f"systems[{i}]"), str(exc)) from None

    def _from_history(self, request: GenerationRequest, claimed: set[int]) -> Any | None:
        """A finished clip of this run with the same request that no other item has claimed."""
        return self.runner.finished_like(request, batch=self.batch, exclude=claimed)

    def _add_learned(self, scores: dict[str, Any], video: Any, prompt: Prompt) -> None:
        values, sources = learned_scores(self.learned, video, prompt.narrative, prompt.tags)
        scores["learned"] = {**(scores.get("learned") or {}), **values}
        scores["learned_from"] = {**(scores.get("learned_from") or {}), **sources}

    def _rescore(self, todo: list[tuple[System, Prompt, int]], everything: dict[str, Any],
                 state: dict[str, Any]) -> int:
        """Learned scores for this shard's finished clips that lack them (their videos are kept)."""
        done = 0
        for system, prompt, seed in todo:
            key = item_key(system.id, prompt.id, seed)
            item = everything.get(key)
            if not item or item.get("status") != "done" or not needs_learned(item.get("scores") or {}, self.learned):
                continue
            video = item.get("video")
            if not video or not Path(video).is_file():
                raise InvalidRequest("--learned", f"{key} is finished but its video {video} is gone; the learned "
                                                  "metrics need it (delete the item from the state files to redo it)")
            new = {**item, "scores": dict(item.get("scores") or {}), "rev": int(item.get("rev", 0) or 0) + 1}
            self._add_learned(new["scores"], video, prompt)
            state[key] = new
            self.folder.write_state(self.shard, state)
            done += 1
            self.stream.write(f"[learned] {key} rescored\n")
            self.stream.flush()
        return done

    def run(self, on_item: Callable[[str, dict[str, Any]], None] | None = None) -> RunSummary:
        require_ready(self.learned, self.runner.studio.settings)  # before anything is written or generated
        self.folder.start(self.suite)
        state = self.folder.read_state(self.folder.state_path(self.shard))
        everything = self.folder.all_items()
        finished = {k for k, v in everything.items() if v.get("status") == "done"}
        claimed = {int(v["history_id"]) for v in everything.values() if v.get("history_id") is not None}
        todo = self.my_items()
        pending = [it for it in todo if item_key(it[0].id, it[1].id, it[2]) not in finished]
        if pending:
            self.preflight()
        rescored = self._rescore(todo, everything, state) if self.learned else 0
        generated = reused = failed = 0
        reused += len(todo) - len(pending)
        spent: list[float] = []
        for n, (system, prompt, seed) in enumerate(pending, start=1):
            key = item_key(system.id, prompt.id, seed)
            request = system.request(prompt.narrative, prompt.tags, seed, self.suite.generation)
            started = time.perf_counter()
            item: dict[str, Any] = {"system": system.id, "prompt": prompt.id, "seed": seed}
            record = self._from_history(request, claimed)
            try:
                if record is None:
                    record = self.runner.generate(request, source="eval", batch=self.batch, cancel=self.cancel)
                    generated += 1
                else:
                    reused += 1
                claimed.add(record.id)
                video = self.history.video_path(record)
                if video is None:
                    raise InvalidRequest("video", f"history entry {record.id} has no video file")
                scores = score_file(video, self.metrics, tags=prompt.tags).to_json()
                if self.learned:
                    self._add_learned(scores, video, prompt)
                item.update(status="done", history_id=record.id, video=str(video), scores=scores)
            except GenerationCancelled:
                raise
            except EngineError as exc:
                failed += 1
                item.update(status="failed", error=str(exc)[:500], history_id=getattr(record, "id", None))
            spent.append(time.perf_counter() - started)
            state[key] = item
            self.folder.write_state(self.shard, state)
            left = len(pending) - n
            per = sum(spent[-10:]) / len(spent[-10:])
            self.stream.write(f"[{len(todo) - len(pending) + n}/{len(todo)}] {key} {item['status']} "
                              f"{spent[-1]:.1f}s  ETA {_eta(per * left)}\n")
            self.stream.flush()
            if on_item is not None:
                on_item(key, item)
        return RunSummary(self.folder.run_id, len(todo), generated, reused, failed, rescored)


__all__ = ["EvalRunner", "RunSummary", "batch_label"]
