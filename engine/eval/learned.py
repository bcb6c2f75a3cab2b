"""Metrics that need weights, behind one interface: `--learned NAME[=PATH]` on `eval run` and `eval score`.

    clip        CLIP / SigLIP text-video alignment: cosine similarity of the clip's mean frame
                embedding with each PKS axis's tag phrases (and with the narrative)
    aesthetic   the LAION improved aesthetic predictor (MLP head on CLIP ViT-L/14 embeddings), 0-10
    videoscore  TIGER-Lab VideoScore's five dimensions (1-4)
    reward      this project's reward model (engine/reward/): r_d per production dimension, the
                combined reward and P(failure)

A metric is used only when its weights are on this machine. `available(settings)` says what is
missing and how to get it (None when all is there); a requested metric that is not available
stops the command with that message before any clip is made or scored: never a silent skip.
Weights load once (`prepare`), on the studio's device. Scores land in an item's scores as
``learned: {metric: {dimension: value}}`` (and which weights under ``learned_from``); reports
average them as ``learned.<metric>.<dimension>`` with bootstrap CIs. Importing this module is
cheap: torch and transformers load in `prepare`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..core.errors import EngineError, InvalidRequest
from ..core.settings import Settings
from .weights import even_frames, hub_folder, metric_device, read_clip

LEARNED_NAMES = ("clip", "aesthetic", "videoscore", "reward")
# dimensions where a lower value is the better one (everything else: higher is better)
LOWER_IS_BETTER = frozenset({"p_failure"})
LAION_HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"  # engine.curation.aesthetic's, spelled here: no numpy there
LAION_CLIP = "openai/clip-vit-large-patch14"


@runtime_checkable
class LearnedMetric(Protocol):
    """One metric that needs weights. Nothing loads until `prepare`."""

    name: str
    needs: str  # what weights, and where they are looked for (for messages and --help)

    def available(self, settings: Settings) -> str | None:
        """None when the weights are here; otherwise what is missing, where to put it, how to get it."""

    def prepare(self) -> None:
        """Load the weights (once); InvalidRequest when they are there but unusable."""

    def identity(self) -> str:
        """Which weights score: a rerun with other weights rescores the clips."""

    def score(self, video: Path, narrative: str, tags: Mapping[str, Any]) -> dict[str, float]:
        """The clip's value per dimension."""


@dataclass(frozen=True)
class LearnedSpec:
    """`--learned NAME[=PATH]` as given."""

    name: str
    path: str | None = None

    def __str__(self) -> str:
        return self.name if self.path is None else f"{self.name}={self.path}"


def parse_learned(values: Sequence[str]) -> tuple[LearnedSpec, ...]:
    specs: list[LearnedSpec] = []
    for text in values:
        name, sep, path = text.partition("=")
        name = name.strip()
        if name not in LEARNED_NAMES:
            raise InvalidRequest("--learned", f"'{name}' is not one of {', '.join(LEARNED_NAMES)} (NAME or NAME=PATH)")
        if sep and not path.strip():
            raise InvalidRequest("--learned", f"'{text}' names no path after '='")
        if any(s.name == name for s in specs):
            raise InvalidRequest("--learned", f"{name} is given twice")
        specs.append(LearnedSpec(name, path.strip() if sep else None))
    return tuple(specs)


def build_metrics(specs: Sequence[LearnedSpec], settings: Settings) -> list[LearnedMetric]:
    """The metrics the specs name, in order; nothing is checked or loaded yet."""
    from . import learned_vlm

    makers: dict[str, Callable[[str | None, Settings], LearnedMetric]] = {
        "clip": learned_vlm.ClipMetric, "aesthetic": AestheticMetric, "videoscore": learned_vlm.VideoScoreMetric,
        "reward": RewardMetric}
    return [makers[s.name](s.path, settings) for s in specs]


def require_ready(metrics: Sequence[LearnedMetric], settings: Settings) -> None:
    """Every metric available and loaded, or InvalidRequest('--learned NAME', what to do)."""
    for metric in metrics:
        problem = metric.available(settings)
        if problem is not None:
            raise InvalidRequest(f"--learned {metric.name}", problem)
    for metric in metrics:
        try:
            metric.prepare()
        except InvalidRequest as exc:
            raise InvalidRequest(f"--learned {metric.name}", exc.reason) from None
        except EngineError as exc:
            raise InvalidRequest(f"--learned {metric.name}", str(exc)) from None


def learned_scores(metrics: Sequence[LearnedMetric], video: Path, narrative: str,
                   tags: Mapping[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """({metric: {dimension: value}}, {metric: identity}) of one clip; NaN values are left out."""
    values: dict[str, dict[str, float]] = {}
    sources: dict[str, str] = {}
    for metric in metrics:
        raw = metric.score(Path(video), narrative, tags)
        values[metric.name] = {k: round(float(v), 6) for k, v in raw.items() if not math.isnan(float(v))}
        sources[metric.name] = metric.identity()
    return values, sources


def needs_learned(scores: Mapping[str, Any], metrics: Sequence[LearnedMetric]) -> bool:
    """Does a finished item lack (or hold other weights') scores of one of these metrics?"""
    have = scores.get("learned") or {}
    source = scores.get("learned_from") or {}
    return any(m.name not in have or source.get(m.name) != m.identity() for m in metrics)


def embedded_narrative(path: Path) -> str:
    """The narrative a clip was generated with (from the settings the studio embeds), or ''."""
    from ..core.export import read_embedded_settings

    try:
        request = read_embedded_settings(path).get("request") or {}
    except InvalidRequest:
        return ""
    return str(request.get("narrative") or "") if isinstance(request, dict) else ""


# ----------------------------------------------------------------------------------- reward model
class RewardMetric:
    """The project's reward model: a checkpoint folder, a name under models/reward, or the newest there."""

    name = "reward"
    needs = "a reward checkpoint folder (reward_config.json + head.safetensors), default: the newest in models/reward"

    def __init__(self, path: str | None, settings: Settings) -> None:
        self.path, self.settings = path, settings
        self.folder: Path | None = None
        self.model: Any = None

    def available(self, settings: Settings) -> str | None:
        from ..reward.catalog import REWARD_CONFIG, find_reward_models

        train = (f"train one with `python -m engine reward train --pairs PAIRS.jsonl --out "
                 f"{settings.reward_dir}/NAME` (docs/reward.md)")
        if self.path is None:
            entries = [e for e in find_reward_models(settings.reward_dir) if e.problem is None]
            if not entries:
                return f"no reward checkpoint in {settings.reward_dir}; {train}, or give one with --learned reward=DIR"
            self.folder = entries[0].path
            return None
        candidate = Path(self.path).expanduser()
        if not candidate.is_dir() and "/" not in self.path and (settings.reward_dir / self.path).is_dir():
            candidate = settings.reward_dir / self.path
        if not (candidate / REWARD_CONFIG).is_file():
            return (f"no reward checkpoint at {candidate} (a folder with {REWARD_CONFIG} and head.safetensors, as "
                    f"`reward train` writes it); {train}, or give another with --learned reward=DIR")
        self.folder = candidate
        return None

    def prepare(self) -> None:
        if self.model is None:
            if self.folder is None and self.available(self.settings) is not None:
                raise InvalidRequest("reward", str(self.available(self.settings)))
            from ..reward.model import RewardModel

            self.model = RewardModel.load(self.folder or Path(), device=metric_device(self.settings))

    def identity(self) -> str:
        self.prepare()
        return str(self.model.key)

    def score(self, video: Path, narrative: str, tags: Mapping[str, Any]) -> dict[str, float]:
        self.prepare()
        result = self.model.score_video(video, narrative, dict(tags))
        return {**{d: float(v) for d, v in result.dimensions.items()}, "reward": float(result.reward),
                "p_failure": float(result.p_failure)}


# ---------------------------------------------------------------------------------- LAION aesthetic
class AestheticMetric:
    """LAION aesthetic predictor. PATH: the head file, or a folder holding it; when that folder is
    also a transformers CLIP ViT-L/14 checkpoint (config.json), it is the image tower, else the
    tower is openai/clip-vit-large-patch14 from the local hub cache. Default PATH: models/aesthetic."""

    name = "aesthetic"
    needs = f"{LAION_HEAD_FILE} (LAION improved aesthetic predictor) and CLIP ViT-L/14 ({LAION_CLIP})"
    frames = 8

    def __init__(self, path: str | None, settings: Settings) -> None:
        self.path, self.settings = path, settings
        self.scorer: Any = None
        self.head: Path | None = None
        self.tower = LAION_CLIP

    def _locate(self, settings: Settings) -> tuple[Path, str]:
        given = Path(self.path).expanduser() if self.path else settings.models_dir / "aesthetic"
        as_file = given.is_file() or (not given.is_dir() and given.suffix in (".pth", ".pt", ".bin", ".safetensors"))
        folder = given.parent if as_file else given
        head = given if as_file else given / LAION_HEAD_FILE
        tower = str(folder) if (folder / "config.json").is_file() else LAION_CLIP
        return head, tower

    def available(self, settings: Settings) -> str | None:
        head, tower = self._locate(settings)
        if not head.is_file():
            return (f"the LAION aesthetic head is not at {head}; download {LAION_HEAD_FILE} from "
                    "github.com/christophschuhmann/improved-aesthetic-predictor (or the hub) there, or give its "
                    "path with --learned aesthetic=FILE")
        if tower == LAION_CLIP and hub_folder(LAION_CLIP, settings) is None:
            return (f"CLIP ViT-L/14 ({LAION_CLIP}) is not in the local hub cache; on a machine with network run "
                    f"`hf download {LAION_CLIP}`, or put a copy of it in {head.parent} beside the head")
        if tower != LAION_CLIP and not (Path(tower) / "preprocessor_config.json").is_file():
            return f"{tower} holds a model but no preprocessor_config.json (CLIP's image processor); copy it there"
        self.head, self.tower = head, tower
        return None

    def prepare(self) -> None:
        if self.scorer is not None:
            return
        problem = self.available(self.settings)
        if problem is not None:
            raise InvalidRequest("aesthetic", problem)
        from ..core.errors import ModelUnavailable
        from ..curation.aesthetic import LaionAestheticScorer

        tower = self.tower
        if tower == LAION_CLIP:
            tower = str(hub_folder(LAION_CLIP, self.settings))

        class _LocalTower(LaionAestheticScorer):
            def _clip_folder(self) -> Path | None:  # the folder found above, even when open_clip is installed
                return Path(self.clip_model)

        scorer = _LocalTower(self.head or Path(), tower, metric_device(self.settings), self.settings.hf_cache_dir)
        try:
            scorer._load()
        except ModelUnavailable as exc:
            raise InvalidRequest("aesthetic", str(exc)) from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise InvalidRequest("aesthetic", f"{self.head} or {tower} could not be loaded ({exc})") from None
        kind, model = scorer._model[0], scorer._model[1]
        width = getattr(model.config, "projection_dim", 768) if kind == "transformers" else 768
        if width != 768:  # the head was trained on ViT-L/14's 768-wide embeddings
            raise InvalidRequest("aesthetic", f"{tower} gives {width}-wide image embeddings; the LAION head needs "
                                              "CLIP ViT-L/14's 768")
        self.scorer = scorer

    def identity(self) -> str:
        return f"{self.head}|{self.tower}"

    def score(self, video: Path, narrative: str, tags: Mapping[str, Any]) -> dict[str, float]:
        self.prepare()
        frames, _fps = read_clip(video)
        return {"score": float(self.scorer.score_clip(frames[even_frames(len(frames), self.frames)]))}


__all__ = ["AestheticMetric", "LAION_HEAD_FILE", "LEARNED_NAMES", "LOWER_IS_BETTER", "LearnedMetric", "LearnedSpec",
           "RewardMetric", "build_metrics", "embedded_narrative", "learned_scores", "needs_learned", "parse_learned",
           "require_ready"]
