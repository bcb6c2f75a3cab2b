"""What an on-policy round carries besides its pairs (engine/training/onpolicy.py, docs/preference.md).

- The tag encoder: a round whose ``training.tag_encoder.enabled`` trains one jointly with the
  adapter; the next round generates its candidates, judges itself and starts training from both.
  Round 1 starts from ``start_tag_encoder`` (or, on the `mini` model, the tag encoder it was
  trained with and always generates through), else from a fresh one.
- The reward model's failure marks: every segment of a paired candidate whose P(failure) is at
  least ``failure_mark`` (default: the reward model's ``warn_failure``, the cut-off of its
  warnings) becomes a *failure* mark in a deformations export (``marks.jsonl``), which the DPO
  stage reads as ``dpo.deformations``: the latent frames inside the rejected clip's marked
  ranges (and not the chosen clip's) weigh ``dpo.failure_weight`` in the loss, exactly as an
  animator's marks do. Candidates of one prompt have distinct seeds, so the marks add no pairs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from ..core.settings import Settings

__all__ = ["check_tag_encoder_keys", "failure_marks", "start_tag_encoder", "trains_tag_encoder",
           "trained_tag_encoder", "write_marks"]

MARK_KIND = "reward_model"  # the kind of a mark the reward model made (an animator's names the deformation)


def trains_tag_encoder(training: Mapping[str, Any]) -> bool:
    te = training.get("tag_encoder")
    return isinstance(te, Mapping) and bool(te.get("enabled"))


def check_tag_encoder_keys(model: str, start: str | None, training: Mapping[str, Any]) -> None:
    """Refuse, in one line naming the key, a tag encoder the round could not carry."""
    from ..core.registry import resolve_model

    te = training.get("tag_encoder")
    if isinstance(te, Mapping) and te.get("init_from") is not None:
        raise InvalidRequest("training.tag_encoder.init_from", "is set by the loop (the previous round's tag "
                                                               "encoder); start round 1 from one with start_tag_encoder")
    trains = trains_tag_encoder(training)
    if start is not None and not trains:
        raise InvalidRequest("start_tag_encoder", "a round generates with this tag encoder, so it must train it "
                                                  "too: set training.tag_encoder.enabled: true")
    if start is not None and not Path(start).is_dir():
        raise InvalidRequest("start_tag_encoder", f"{start} is not a folder")
    if resolve_model(model).builtin == "mini" and not trains:
        raise InvalidRequest("training.tag_encoder.enabled", "the mini model generates through its built-in tag "
                                                             "encoder, so a round on it must train and carry it: "
                                                             "set it to true")


def start_tag_encoder(model: str, start: str | None, training: Mapping[str, Any], settings: Settings) -> str | None:
    """Round 1's tag encoder: `start`, the mini model's own, or none (a fresh one is trained)."""
    if start is not None or not trains_tag_encoder(training):
        return start
    from ..core.registry import resolve_model

    if resolve_model(model).builtin != "mini":
        return None
    from ..core.mini_model import TAG_ENCODER, ensure_mini_model

    return str(ensure_mini_model(settings.models_dir) / TAG_ENCODER)


def trained_tag_encoder(adapter_dir: Path) -> str | None:
    """The tag encoder a training run wrote beside its adapter, if it trained one."""
    folder = adapter_dir.parent / "tag_encoder"
    return str(folder) if folder.is_dir() else None


def failure_marks(pairs: list[dict[str, Any]], cands: Mapping[str, list[dict[str, Any]]],
                  threshold: float) -> list[dict[str, Any]]:
    """Deformations-export rows: the failure segments (P(failure) >= threshold) of every paired clip."""
    by_id = {int(c["history_id"]): c for have in cands.values() for c in have}
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for pair in pairs:
        for key in ("chosen_generation_id", "rejected_generation_id"):
            cid = int(pair[key])
            if cid in seen:
                continue
            seen.add(cid)
            c = by_id[cid]
            for seg in c["score"].get("segments", ()):
                if float(seg["p_failure"]) >= threshold:
                    rows.append({"video": c["video"], "prompt": pair["prompt"], "seed": int(c["seed"]),
                                 "generation_id": cid, "intent": "failure", "kind": MARK_KIND,
                                 "source_start_frame": int(seg["start_frame"]),
                                 "source_end_frame": int(seg["end_frame"]), "p_failure": float(seg["p_failure"])})
    return rows


def write_marks(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows
