"""The absolute 1-5 scores as a training file (the rating exports carry only pairwise verdicts).

Same selection as the rating exports: submitted first servings only (a hidden repeat is the
same rater again) and never gold pairs. One JSON line per clip, dimension and rater:
``generation_id, video, prompt, tags, model, dimension, score, rater_id, judgement_id``.
Written atomically; admins only (the acting account is checked against the database).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.errors import InvalidRequest, StorageError
from ..core.toolkit.files import write_text

__all__ = ["export_scores", "score_rows"]


def score_rows(votes: Any, generations: Any, video_of: Any) -> list[dict[str, Any]]:
    rows = []
    for v in votes:
        if v.is_repeat or v.is_gold_pair:
            continue
        for gid, score in sorted(v.scores.items()):
            g = generations[gid]
            rows.append({"generation_id": gid, "video": video_of(g), "prompt": g.narrative,
                         "tags": {k: list(x) for k, x in g.tags.items()}, "model": g.model,
                         "dimension": v.dimension, "score": int(score), "rater_id": v.rater_id,
                         "judgement_id": v.judgement_id})
    return rows


def export_scores(service: Any, actor: Any, out: Path | str) -> int:
    """Write the scores of `service` (a `RatingService`) to a .jsonl file; returns the row count."""
    from ..rating.types import PermissionDenied

    out = Path(out).expanduser()
    if out.suffix.lower() != ".jsonl":
        raise InvalidRequest("out", f"the scores file must end in .jsonl; got '{out.name}'")
    me = service.repository.get_rater(actor.id)
    if not me.active or not me.is_admin or me.name != actor.name:
        raise PermissionDenied("export", "only an active admin may export the scores")
    votes = service.repository.votes()
    gens = service.repository.generations({gid for v in votes for gid in v.scores})
    media = Path(service.media_dir)
    rows = score_rows(votes, gens, lambda g: str(media / g.video_path) if g.video_path else "")
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    try:
        write_text(out, text, mode=0o644)  # readable by whoever reads the export, like a plain file
    except OSError as exc:
        raise StorageError(f"could not write {out}: {exc.strerror or exc}") from exc
    return len(rows)
