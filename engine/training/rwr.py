"""Reward-weighted flow matching (Flow-RWR): fine-tuning on unpaired clips the reward model scored.

With an ``rwr:`` section a fine-tuning run weighs each clip of ``data.manifest`` by its utility u,
the studio's one utility (`engine.reward.utility`: the reward model's combined reward, mean r_d
minus FAILURE_PENALTY · P(failure); P(intentional) never counts against a clip)::

    w_i  = exp((u_i − max_j u_j) / τ),  normalised to mean 1 over the clips, capped at max_weight
    loss = 1/B Σ_i w_i ‖v_θ(x_t,i) − v_i‖²          (‖·‖²: mean over the latent's elements)

So the clips the reward model likes most pull hardest, a collapsed clip barely at all, and no
pair is needed. ``rwr.scores`` gives the scores: JSON Lines rows ``{"video", "utility"}`` or
``{"video", "score": {...}}`` (a score's utility: its ``reward``), or the JSON object `python -m engine reward score --json` prints
(keys are video paths or history ids; a history id is looked up in the studio's history). Clips
without a score are left out (and counted). Everything else is the fine-tuning run's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..core.errors import InvalidRequest
from ..reward.utility import utility_of_dict
from .dataset import Planned
from .loop import Trainer

__all__ = ["RWRTrainer", "read_utilities", "rwr_weights"]


def _utility(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, dict) and isinstance(value.get("dimensions"), dict):
        return utility_of_dict(value)
    raise InvalidRequest("rwr.scores", f"{where}: give a finite utility or a reward score object")


def read_utilities(path: Path | str, video_of_history: Any = None) -> dict[str, float]:
    """Resolved video path -> utility. `video_of_history(id)` maps a history id key to its video."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest("rwr.scores", f"{path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = json.loads(text) if text.lstrip().startswith("{") and "\n{" not in text.strip() else None
        rows = None if data is not None else [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("rwr.scores", f"{path} could not be read ({exc})") from None
    out: dict[str, float] = {}
    if isinstance(data, dict) and "video" not in data:  # `reward score --json`: {key: score}
        for key, score in data.items():
            video = video_of_history(int(key)) if str(key).isdigit() and video_of_history else Path(key)
            if video is not None:
                out[str(Path(video).resolve())] = _utility(score, f"{path} entry {key}")
        return out
    for n, row in enumerate(rows or [data], 1):
        if not isinstance(row, dict) or not isinstance(row.get("video"), str):
            raise InvalidRequest("rwr.scores", f"{path} row {n}: needs a video path")
        video = Path(row["video"]) if Path(row["video"]).is_absolute() else path.parent / row["video"]
        out[str(video.resolve())] = _utility(row.get("utility", row.get("score")), f"{path} row {n}")
    return out


def rwr_weights(utilities: list[float], temperature: float, max_weight: float) -> torch.Tensor:
    u = torch.tensor(utilities, dtype=torch.float64)
    w = torch.exp((u - u.max()) / temperature)
    w = w / w.mean()
    return w.clamp(max=max_weight).float()


class RWRTrainer(Trainer):
    """The fine-tuning `Trainer` with each clip's loss weighed by its reward (module docstring)."""

    def _prepare_data(self, pipe: Any) -> list[Planned]:
        planned = super()._prepare_data(pipe)
        cfg = self.config.rwr
        assert cfg is not None
        found = read_utilities(cfg.scores, self._history_video)
        keep = [i for i, p in enumerate(planned) if str(Path(p.clip.path).resolve()) in found]
        if not keep:
            raise InvalidRequest("rwr.scores", f"none of the {len(planned)} clips of data.manifest has a score in "
                                               f"{cfg.scores}")
        planned = [planned[i] for i in keep]
        self.prompts = [self.prompts[i] for i in keep]
        utilities = [found[str(Path(p.clip.path).resolve())] for p in planned]
        self.rwr_weights = rwr_weights(utilities, cfg.temperature, cfg.max_weight)
        self.log(f"rwr: {len(planned)} scored clips ({len(found)} scores, {len(found) - len(keep)} "
                 f"scores for other clips), weights {float(self.rwr_weights.min()):.3f}.."
                 f"{float(self.rwr_weights.max()):.3f}")
        return planned

    def _history_video(self, history_id: int) -> Path | None:
        from ..storage.clips import HistoryService
        from ..storage.db import open_database

        db = open_database(self.settings.database_target)
        try:
            history = HistoryService(db, self.settings.media_dir)
            return history.video_path(history.get(history_id))
        finally:
            db.dispose()

    def sample_loss(self, pred: torch.Tensor, target: torch.Tensor, clips: list[int]) -> torch.Tensor:
        per = ((pred.float() - target.float()) ** 2).flatten(1).mean(1)
        return (per * self.rwr_weights[clips].to(per.device)).mean()
