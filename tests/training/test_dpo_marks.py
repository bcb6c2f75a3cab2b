"""Failure-aware preference pairs and loss, on real rating data (SQLite studio, rated through the
service, exported like `engine rating export`) and the preview model:

- on one prompt and seed, a clip with a failure mark loses to every clip without one (also
  against the raters' choice); an intentional mark never makes a clip lose; clips of another
  prompt or seed are never paired by a mark;
- the frames inside a marked failure range weigh `dpo.failure_weight` in the loss;
- a DPO run on these pairs starts at log 2 and learns every pair, the mark pair included.
"""
from __future__ import annotations

import dataclasses
import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.core.pks import load_taxonomy
from engine.rating.types import DeformationMark
from engine.training.config import DPOConfig, parse_config
from engine.training.dataset import Clip, Planned
from engine.training.dpo import DPOTrainer, failure_frame_weights, flow_dpo_loss, read_preference_pairs
from support.rating import ADMIN, RATERS, prefer_better_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

FAIL = ("n1-wan2.1-t2v-1.3b", 5, 7)  # clip, playback frames: a failure, marked in its pair with n1-preview
ART = ("n1-preview", 1, 3)  # an intentional smear on the preview clip of that pair
LATE = ("n3-preview", 0, 2)  # a failure on a clip of another prompt and seed (the picked pair)


def _rate(studio: Any) -> None:
    """One rater judges every pair: the better model wins; the marks above are added where they belong."""
    service = studio.service(gold_share=0.0, repeat_share=0.0)
    rater = service.rater_by_name(RATERS[0])
    ids = studio.clips
    while (pair := service.next_pair(rater)) is not None:
        form = prefer_better_model(service, pair)
        record = service.repository.get_assignment(pair.assignment_id)
        comparison = service.repository.get_comparison(record.comparison_id)
        both = {comparison.generation_a_id, comparison.generation_b_id}
        left = record.left_generation_id
        marks = []
        if both == {ids[FAIL[0]], ids[ART[0]]}:
            marks = [(FAIL, "failure", "face_melt"), (ART, "intentional", "smear")]
        elif ids[LATE[0]] in both:
            marks = [(LATE, "failure", "flicker")]
        shown = tuple(DeformationMark("A" if ids[name] == left else "B", lo, hi, kind, intent)
                      for (name, lo, hi), intent, kind in marks)
        service.submit(rater, pair.assignment_id, dataclasses.replace(form, deformations=shown))


@pytest.fixture
def rated(studio: Any, tmp_path: Path) -> types.SimpleNamespace:
    _rate(studio)
    service = studio.service()
    admin = service.rater_by_name(ADMIN)
    pairs = service.export(admin, "pickapic", tmp_path / "pairs.jsonl").path
    marks = service.export(admin, "deformations", tmp_path / "deformations.jsonl").path
    return types.SimpleNamespace(pairs=pairs, marks=marks, clips=studio.clips, studio=studio, root=tmp_path)


def _names(found: Any, studio: Any) -> dict[int, str]:
    history = {studio.settings.media_dir / g.video_path: name for name, gid in studio.clips.items()
               for g in [studio.service().repository.generations([gid])[gid]]}
    return {c.index: history[c.path] for c in found.clips}


def _pairs(found: Any, names: dict[int, str], origin: str | None = None) -> set[tuple[str, str]]:
    return {(names[w], names[lo]) for w, lo in found.pairs if origin is None or found.origin[(w, lo)] == origin}


def test_failure_marks_make_pairs_and_intentional_marks_never_lose(rated) -> None:
    taxonomy = load_taxonomy()
    human = read_preference_pairs(rated.pairs, DPOConfig(), taxonomy, rated.studio.settings.media_dir)
    names = _names(human, rated.studio)
    assert ("n1-wan2.1-t2v-1.3b", "n1-preview") in _pairs(human, names)  # the raters preferred wan

    cfg = DPOConfig(deformations=str(rated.marks))
    found = read_preference_pairs(rated.pairs, cfg, taxonomy, rated.studio.settings.media_dir)
    names = _names(found, rated.studio)
    marks = _pairs(found, names, "marks")
    # The clip with a failure mark loses to both clips of its prompt and seed without one.
    assert marks == {("n1-preview", "n1-wan2.1-t2v-1.3b"), ("n1-animegen-t2v", "n1-wan2.1-t2v-1.3b")}
    assert found.dropped["human choices overridden by a failure mark"] == 1  # wan > preview was the choice
    losers = {lo for _, lo in _pairs(found, names)}
    assert "n3-preview" not in {n for p in _pairs(found, names) for n in p}  # alone on its prompt and seed
    # The intentional smear never makes n1-preview lose to a clip the raters did not prefer.
    assert ("n1-wan2.1-t2v-1.3b", "n1-preview") not in _pairs(found, names) and "n1-animegen-t2v" not in losers
    wan = next(i for i, n in names.items() if n == "n1-wan2.1-t2v-1.3b")
    assert found.failures[wan] == [(FAIL[1], FAIL[2])]  # same rate and length: playback = source frames
    assert next(i for i, n in names.items() if n == "n1-preview") not in found.failures
    choices_only = read_preference_pairs(rated.pairs, dataclasses.replace(cfg, sources=("choices",)), taxonomy,
                                         rated.studio.settings.media_dir)
    assert _pairs(choices_only, _names(choices_only, rated.studio)) == _pairs(human, names)


def test_a_mark_with_a_bad_range_is_refused_with_its_row(rated, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = rated.marks.read_text().splitlines()
    bad.write_text(lines[0].replace('"source_end_frame": ', '"source_end_frame": -') + "\n")
    from engine.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as exc:
        read_preference_pairs(rated.pairs, DPOConfig(deformations=str(bad)), load_taxonomy())
    assert exc.value.field == "dpo.deformations" and "row 1" in str(exc.value)


def test_failure_frames_weigh_more_in_the_loss() -> None:
    def planned(index: int, frames: tuple[int, ...]) -> Planned:
        return Planned(Clip(index, Path(f"{index}.mp4"), "p", str(index)), 32, 32, frames)

    winner, loser = planned(0, (0, 1, 2, 3, 4, 5, 6, 7, 8)), planned(1, (0, 1, 2, 3, 4, 5, 6, 7, 8))
    # Sample frames 0 | 1-4 | 5-8 are latent frames 0 | 1 | 2 (stride 4).
    w = failure_frame_weights(winner, loser, {1: [(6, 7)], 0: [(1, 1)]}, 4, 3.0)
    assert w.tolist() == [1.0, 1.0, 3.0]  # latent 2: the loser failed there; latent 1: the winner did too
    assert failure_frame_weights(winner, loser, {0: [(6, 7)], 1: [(6, 8)]}, 4, 3.0).tolist() == [1.0, 1.0, 1.0]
    # Errors (B, C, F, H, W): the loser is off by 1 only in latent frame 2, the winner nowhere.
    target = torch.zeros(1, 2, 3, 2, 2)
    off = target.clone()
    off[:, :, 2] = 1.0
    weights = w.unsqueeze(0)
    _, plain = flow_dpo_loss(target, off, target, target, target, target, beta=1.0)
    _, dense = flow_dpo_loss(target, off, target, target, target, target, beta=1.0, frame_weights=weights)
    assert float(plain) == pytest.approx(0.5 * (1 / 3)) and float(dense) == pytest.approx(0.5 * (3 / 5))
    loss, margin = flow_dpo_loss(off, off, off, off, target, target, beta=500.0, frame_weights=weights)
    assert float(loss) == pytest.approx(math.log(2.0)) and float(margin) == 0.0  # policy = reference


def test_dpo_learns_the_mark_pair_from_rating_data(rated, dpo_ws) -> None:
    raw = dpo_ws.raw("marks", data={"manifest": str(rated.pairs), "num_frames": 5, "fps": 8, "base_size": [32, 32]},
                     cache={"dir": str(rated.root / "cache"), "dtype": "float32"},
                     dpo={"beta": 1000.0, "deformations": str(rated.marks), "failure_weight": 4.0},
                     train={"max_steps": 12, "checkpoint_every": 100, "batch_size": 2})
    losses: list[float] = []
    # The exports name clips relative to the studio's media folder: the trainer reads that studio's.
    settings = dataclasses.replace(dpo_ws.settings, media_root=rated.studio.settings.media_dir)
    trainer = DPOTrainer(parse_config(raw), settings, show_progress=False,
                         on_step_end=lambda _s, loss: losses.append(loss))
    trainer.prepare()
    names = {i: p.clip.path for i, p in enumerate(trainer.clip_planned)}
    origin = [trainer.found.origin.get(next((w, lo) for w, lo in trainer.found.pairs
                                             if trainer.found.clips[w].path == names[pw]
                                             and trainer.found.clips[lo].path == names[pl]))
              for pw, pl in trainer.pairs]
    assert origin.count("marks") == 1 and origin.count("choices") == 2  # animegen's clips are another bucket
    mark = origin.index("marks")
    assert trainer.frame_weights[mark].tolist() == [1.0, 4.0]  # the failure is in the second latent frame
    assert all(trainer.frame_weights[i].tolist() == [1.0, 1.0] for i in range(3) if i != mark)
    trainer.fit()
    assert losses[0] == pytest.approx(math.log(2.0), abs=1e-6)
    margins = trainer.implicit_margins()
    assert bool((margins > 0).all()), margins.tolist()
