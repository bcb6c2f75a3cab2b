"""The deformation-aware reward model: frozen image backbone + small trainable temporal head.

Input: a clip's frames sampled at a fixed rate (`RewardConfig.fps`, at most `num_frames`,
centred; shorter clips are padded with their last frame and masked) and its prompt and tags.

    frame t ──backbone (frozen)──> f_t ──Linear──┐
    f_t − f_{t−1} ─────────────────────Linear──┤ sum + position ──> frame token t
    low-res x_t − x_{t−1}, x_{t+1} − 2x_t + x_{t−1} ──conv stem──┘
    prompt words + "field=value" tags ──hashed EmbeddingBag──> [CLS] token
    [CLS, frame tokens] ──1-layer temporal transformer (masked)──>
        [CLS]                 ──> one score per dimension r_d  (and 1-5 estimate a_d r_d + b_d)
        mean of segment s     ──> none / intentional / failure logits

The first and second frame differences are what make flicker (a frame unlike both neighbours)
and tearing (parts jumping between frames) visible; an intentional smear or squash-and-stretch
changes smoothly along the motion and leaves a small second difference.

Combined reward: ``R = Σ_d w_d r_d / Σ_d w_d − FAILURE_PENALTY · P(failure)`` where
``P(failure)`` is the largest per-segment failure probability. Only *failure* is subtracted:
an intentional deformation costs nothing, which is the point of the model. R is the studio's one
utility (`engine.reward.utility`): Best of N and loop rounds rank clips by it.

Checkpoint folder: ``reward_config.json`` (config, feature size, training summary),
``head.safetensors`` (the trainable head) and, for a tiny backbone, ``backbone.safetensors``.
A pretrained backbone is referenced by repo id / folder and loaded from local files only.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InvalidRequest
from ..core.toolkit.files import atomic_path, write_json
from .backbone import Backbone, build_backbone, tiny_clip
from .config import CLIP_MEAN, CLIP_STD, DEFORMATION_CLASSES, RewardConfig
from .losses import outcome_log_probs, raw_to_tie_param, tie_param_to_raw
from .types import RewardScore, SegmentScore
from .utility import penalised

__all__ = ["Backbone", "ClipFeatures", "RewardHead", "RewardModel", "RewardOutput", "build_backbone",
           "sample_positions", "segment_bounds", "segment_frame_ranges", "text_token_ids", "FORMAT", "CONFIG_FILE", "HEAD_FILE", "BACKBONE_FILE"]

FORMAT = "animatrix-reward"
FORMAT_VERSION = 1
CONFIG_FILE = "reward_config.json"
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"
_BATCH_FRAMES = 64



# ------------------------------------------------------------------------------- frames & text
def sample_positions(available: int, source_fps: float | None, want: int, fps: float) -> list[int]:
    """Source frame indices sampled at `fps` (at most `want`, centred in the clip)."""
    if available < 1:
        return []
    step = source_fps / fps if source_fps and source_fps > 0 else 1.0
    fits = int(math.floor((available - 1) / step + 1e-9)) + 1
    count = max(1, min(want, fits))
    start = (available - 1 - (count - 1) * step) / 2.0
    return [min(available - 1, max(0, int(round(start + i * step)))) for i in range(count)]


_WORD = re.compile(r"[a-z0-9]+")


def text_token_ids(prompt: str, tags: Mapping[str, Sequence[str]] | None, buckets: int) -> list[int]:
    """Hashed ids of the prompt's words and of every "field=value" tag (0: no text at all).

    crc32, not `hash()`: Python salts string hashes per process, ids must be stable on disk.
    """
    words = [f"w:{w}" for w in _WORD.findall((prompt or "").lower())]
    for field_id, values in sorted((tags or {}).items()):
        vals = (values,) if isinstance(values, str) else tuple(values)
        words += [f"t:{field_id}={v}" for v in vals]
    return [1 + zlib.crc32(w.encode("utf-8")) % (buckets - 1) for w in words] or [0]


@dataclass
class ClipFeatures:
    """What the head needs from one clip; the frozen backbone's part is computed once."""

    feats: torch.Tensor  # [T, D] float32 backbone features (padded rows repeat the last frame)
    small: torch.Tensor  # [T, 3, s, s] uint8 low-resolution frames for the motion stem
    mask: torch.Tensor  # [T] bool, True for real frames
    positions: tuple[int, ...]  # source frame index of each real sampled frame
    source_frames: int


@dataclass
class RewardOutput:
    scores: torch.Tensor  # [B, n_dims] r_d
    absolute: torch.Tensor  # [B, n_dims] 1-5 estimates
    segment_logits: torch.Tensor  # [B, S, 3]
    segment_valid: torch.Tensor  # [B, S] bool


# -------------------------------------------------------------------------------------- head
class MotionStem(nn.Module):
    """Per-frame features of the first and second temporal differences of low-res frames."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(6, 16, 3, stride=2, padding=1), nn.GELU(),
                                 nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GELU())
        self.out = nn.Linear(64, d_model)

    def forward(self, small: torch.Tensor) -> torch.Tensor:
        b, t = small.shape[:2]
        prev = torch.cat([small[:, :1], small[:, :-1]], dim=1)
        nxt = torch.cat([small[:, 1:], small[:, -1:]], dim=1)
        diffs = torch.cat([small - prev, nxt - 2.0 * small + prev], dim=2).flatten(0, 1)
        h = self.net(diffs)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.abs().amax(dim=(2, 3))], dim=1)
        return self.out(pooled).view(b, t, -1)


def segment_bounds(num_frames: int, segments: int) -> list[tuple[int, int]]:
    """Sampled-frame ranges [start, end) of each segment."""
    edges = [math.floor(s * num_frames / segments) for s in range(segments + 1)]
    return [(edges[s], edges[s + 1]) for s in range(segments)]


def segment_frame_ranges(positions: Sequence[int], num_frames: int, segments: int) -> list[tuple[int, int] | None]:
    """Source frames (inclusive) each segment stands for: from its first sampled frame to just
    before the next segment's first one (the last segment: to its last sampled frame), so a
    mark between two sampled frames still lands in a segment. None: no real frame in it."""
    out: list[tuple[int, int] | None] = []
    for start, end in segment_bounds(num_frames, segments):
        if start >= len(positions):
            out.append(None)
            continue
        last = positions[end] - 1 if end < len(positions) else positions[-1]
        out.append((positions[start], max(positions[start], last)))
    return out


class RewardHead(nn.Module):
    """Everything that trains: projections, motion stem, text bag, temporal transformer, heads."""

    def __init__(self, config: RewardConfig, feature_dim: int) -> None:
        super().__init__()
        c = config
        d = c.d_model
        self.config = c
        self.frame_proj = nn.Linear(feature_dim, d)
        self.diff_proj = nn.Linear(feature_dim, d)
        self.motion = MotionStem(d)
        self.position = nn.Parameter(torch.randn(c.num_frames, d) * 0.02)
        self.cls = nn.Parameter(torch.zeros(d))
        self.text = nn.EmbeddingBag(c.text_buckets, d, mode="mean")
        nn.init.normal_(self.text.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(d, c.n_heads, dim_feedforward=2 * d, dropout=c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        n = len(c.dimensions)
        self.score = nn.Linear(d, n)
        self.abs_scale = nn.Parameter(torch.ones(n))
        self.abs_bias = nn.Parameter(torch.full((n,), 3.0))
        self.deform = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, len(DEFORMATION_CLASSES)))
        self.tie_raw = nn.Parameter(torch.full((n,), tie_param_to_raw(c.tie_init, c.tie_model)),
                                    requires_grad=c.learn_tie)
        self._bounds = segment_bounds(c.num_frames, c.segments)

    def forward(self, feats: torch.Tensor, small: torch.Tensor, mask: torch.Tensor, text_ids: torch.Tensor,
                text_offsets: torch.Tensor) -> RewardOutput:
        """feats [B, T, D], small [B, T, 3, s, s] (0..1), mask [B, T] (True = real frame)."""
        prev = torch.cat([feats[:, :1], feats[:, :-1]], dim=1)
        t = feats.shape[1]
        x = self.frame_proj(feats) + self.diff_proj(feats - prev) + self.motion(small) + self.position[:t]
        cls = (self.cls + self.text(text_ids, text_offsets)).unsqueeze(1)
        ignore = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        h = self.norm(self.encoder(torch.cat([cls, x], dim=1), src_key_padding_mask=ignore))
        scores = self.score(h[:, 0])
        frames, m = h[:, 1:], mask.float().unsqueeze(-1)
        pooled, valid = [], []
        for start, end in self._bounds:
            w = m[:, start:end]
            pooled.append((frames[:, start:end] * w).sum(1) / w.sum(1).clamp_min(1.0))
            valid.append(mask[:, start:end].any(dim=1))
        seg = torch.stack(pooled, dim=1)
        return RewardOutput(scores, scores * self.abs_scale + self.abs_bias, self.deform(seg),
                            torch.stack(valid, dim=1))


# ------------------------------------------------------------------------------------- model
class RewardModel(nn.Module):
    """Backbone + head, with the helpers that score clips and save/load checkpoints."""

    def __init__(self, config: RewardConfig, backbone: Backbone, head: RewardHead | None = None,
                 name: str = "reward") -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = head or RewardHead(config, backbone.feature_dim)
        self.name = name
        self.train_summary: dict[str, Any] = {}

    @classmethod
    def build(cls, config: RewardConfig, *, seed: int = 0, name: str = "reward") -> "RewardModel":
        backbone = build_backbone(config.backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = RewardHead(config, backbone.feature_dim)
        return cls(config, backbone, head, name)

    @property
    def device(self) -> torch.device:
        return self.head.cls.device

    def train(self, mode: bool = True) -> "RewardModel":
        super().train(mode)
        self.backbone.train(False)
        return self

    # -- features -------------------------------------------------------------------------------
    @torch.no_grad()
    def clip_features(self, frames: np.ndarray, source_fps: float | None) -> ClipFeatures:
        """Sample a clip (uint8 [F, H, W, 3]) and run the frozen backbone on its frames."""
        c = self.config
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
            raise InvalidRequest("frames", f"must be uint8 [frames, height, width, 3], got "
                                           f"{getattr(frames, 'shape', type(frames).__name__)}")
        positions = sample_positions(len(frames), source_fps, c.num_frames, c.fps)
        padded = positions + [positions[-1]] * (c.num_frames - len(positions))
        # uint8 channels-last resizing on the CPU: ~50x faster than converting full-size frames
        # to float first, and within one grey level of it. The whole frame is resized (not
        # centre-cropped like CLIP's processor): a deformation at the picture's edge stays in view.
        raw = torch.from_numpy(np.ascontiguousarray(frames[padded])).permute(0, 3, 1, 2)
        size, s = self.backbone.image_size, c.motion_size
        feats = []
        for i in range(0, len(raw), _BATCH_FRAMES):
            img = F.interpolate(raw[i:i + _BATCH_FRAMES], size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)
            feats.append(self.backbone(img.to(self.device).float() / 255.0).cpu())
        small = F.interpolate(raw, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        mask = torch.zeros(c.num_frames, dtype=torch.bool)
        mask[:len(positions)] = True
        return ClipFeatures(torch.cat(feats), small.contiguous(), mask, tuple(positions), len(frames))

    def forward_features(self, items: Sequence[ClipFeatures], texts: Sequence[list[int]]) -> RewardOutput:
        """Run the head on a batch of precomputed clip features (keeps the autograd graph)."""
        dev = self.device
        feats = torch.stack([i.feats for i in items]).to(dev)
        small = torch.stack([i.small for i in items]).to(dev).float() / 255.0
        mask = torch.stack([i.mask for i in items]).to(dev)
        ids = torch.tensor([t for ids in texts for t in ids], dtype=torch.long, device=dev)
        offsets = torch.tensor(np.cumsum([0] + [len(t) for t in texts[:-1]]), dtype=torch.long, device=dev)
        return self.head(feats, small, mask, ids, offsets)

    def text_ids(self, prompt: str, tags: Mapping[str, Sequence[str]] | None) -> list[int]:
        return text_token_ids(prompt, tags, self.config.text_buckets)

    # -- scoring --------------------------------------------------------------------------------
    def tie_params(self) -> dict[str, float]:
        values = raw_to_tie_param(self.head.tie_raw.detach().cpu(), self.config.tie_model)
        return {d: float(v) for d, v in zip(self.config.dimensions, values)}

    def failure_probabilities(self, out: RewardOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-segment class probabilities [B, S, 3] and each clip's P(failure) (largest segment)."""
        probs = torch.softmax(out.segment_logits.float(), dim=-1)
        fail = probs[..., 2].masked_fill(~out.segment_valid, 0.0).amax(dim=1)
        return probs, fail

    def combined(self, scores: torch.Tensor, p_failure: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(self.config.dimension_weights, dtype=torch.float32, device=scores.device)
        return penalised((scores.float() * w).sum(-1) / w.sum(), p_failure)

    @torch.no_grad()
    def score_features(self, items: Sequence[ClipFeatures], texts: Sequence[list[int]],
                       batch_size: int = 32) -> list[RewardScore]:
        was = self.training
        self.eval()
        try:
            results: list[RewardScore] = []
            for i in range(0, len(items), batch_size):
                chunk = items[i:i + batch_size]
                out = self.forward_features(chunk, texts[i:i + batch_size])
                results += self._scores(chunk, out)
            return results
        finally:
            self.train(was)

    def _scores(self, items: Sequence[ClipFeatures], out: RewardOutput) -> list[RewardScore]:
        c = self.config
        probs, fail = self.failure_probabilities(out)
        total = self.combined(out.scores, fail)
        key = self.key
        results = []
        for b, item in enumerate(items):
            segments, warnings = [], []
            for s, frames in enumerate(segment_frame_ranges(item.positions, c.num_frames, c.segments)):
                if frames is None or not bool(out.segment_valid[b, s]):
                    continue
                p = probs[b, s].tolist()
                seg = SegmentScore(s, frames[0], frames[1], p[0], p[1], p[2])
                segments.append(seg)
                if seg.p_failure >= c.warn_failure:
                    warnings.append(f"possible failure (collapse, not an intentional deformation) in frames "
                                    f"{seg.start_frame}-{seg.end_frame}: p={seg.p_failure:.2f}")
            results.append(RewardScore(
                reward=float(total[b]), dimensions=dict(zip(c.dimensions, out.scores[b].tolist())),
                absolute=dict(zip(c.dimensions, out.absolute[b].clamp(1.0, 5.0).tolist())),
                p_failure=float(fail[b]), p_intentional=max((seg.p_intentional for seg in segments), default=0.0),
                segments=tuple(segments), warnings=tuple(warnings), model_key=key))
        return results

    def score_frames(self, frames: np.ndarray, fps: float | None, prompt: str = "",
                     tags: Mapping[str, Sequence[str]] | None = None) -> RewardScore:
        return self.score_features([self.clip_features(frames, fps)], [self.text_ids(prompt, tags)])[0]

    def score_video(self, path: Path | str, prompt: str = "", tags: Mapping[str, Sequence[str]] | None = None
                    ) -> RewardScore:
        from ..core.export import probe_video, read_frames

        return self.score_frames(read_frames(Path(path)), probe_video(Path(path)).fps, prompt, tags)

    def preference(self, a: RewardScore, b: RewardScore, dimension: str) -> tuple[float, float, float]:
        """P(a better), P(tie), P(b better) on one dimension under the model's tie model."""
        if dimension not in self.config.dimensions:
            raise InvalidRequest("dimension", f"'{dimension}' is not one of {', '.join(self.config.dimensions)}")
        i = self.config.dimensions.index(dimension)
        logp = outcome_log_probs(torch.tensor(a.dimensions[dimension]), torch.tensor(b.dimensions[dimension]),
                                 self.head.tie_raw.detach().cpu()[i], self.config.tie_model)
        p = logp.exp().tolist()
        return p[0], p[1], p[2]

    # -- files ----------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Identity of these weights (name + hash of the head): scores stored under it stay apart."""
        digest = hashlib.sha256()
        for k, v in sorted(self.head.state_dict().items()):
            digest.update(k.encode())
            digest.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return f"{self.name}@{digest.hexdigest()[:12]}"

    @property
    def generator_families(self) -> tuple[str, ...]:
        """The model families whose clips it was trained on; empty when the exports did not say."""
        return tuple(self.train_summary.get("generator_families") or ())

    def check_generator(self, family: str, field: str = "reward_model") -> None:
        """Refuse to judge clips of a family it never saw: its scores would be read off another model's look."""
        trained = self.generator_families
        if trained and family not in trained:
            raise InvalidRequest(field, f"{self.key} was trained on clips of {', '.join(trained)} models, not "
                                        f"{family}; train one on {family} clips (`reward train`) or pick another")

    def save(self, folder: Path | str) -> Path:
        """Write the checkpoint (see the module docstring); files are replaced atomically."""
        from safetensors.torch import save_file

        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)

        def tensors(module: nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}

        with atomic_path(folder / HEAD_FILE, suffix=".tmp", mode=0o644) as tmp:
            save_file(tensors(self.head), str(tmp), metadata={"format": FORMAT})
        if self.config.backbone.kind == "tiny":
            with atomic_path(folder / BACKBONE_FILE, suffix=".tmp", mode=0o644) as tmp:
                save_file(tensors(self.backbone.model), str(tmp), metadata={"format": FORMAT})
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_dict(),
                "feature_dim": self.backbone.feature_dim, "train": self.train_summary}
        # The config goes last: a folder with a config but no weights would read as a checkpoint.
        write_json(folder / CONFIG_FILE, meta, indent=2, default=str, allow_nan=True, mode=0o644)
        return folder

    @classmethod
    def load(cls, folder: Path | str, *, device: str | torch.device = "cpu") -> "RewardModel":
        from safetensors.torch import load_file

        folder = Path(folder).expanduser()
        meta_path = folder / CONFIG_FILE
        if not meta_path.is_file():
            raise InvalidRequest("model", f"{folder} is not a reward-model checkpoint (no {CONFIG_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidRequest("model", f"{meta_path} could not be read ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InvalidRequest("model", f"{meta_path} is not an AniMatrix reward-model config")
        config = RewardConfig.from_dict(meta.get("config", {}))
        if config.backbone.kind == "tiny":
            if not (folder / BACKBONE_FILE).is_file():
                raise InvalidRequest("model", f"{folder} lacks {BACKBONE_FILE} (the tiny backbone's weights)")
            model = tiny_clip(config.backbone)
            model.load_state_dict(load_file(str(folder / BACKBONE_FILE)), strict=True)
            backbone = Backbone(model, config.backbone, config.backbone.image_size, config.backbone.hidden_size,
                                CLIP_MEAN, CLIP_STD)
        else:
            backbone = build_backbone(config.backbone)
        if int(meta.get("feature_dim", backbone.feature_dim)) != backbone.feature_dim:
            raise InvalidRequest("model", f"the backbone gives {backbone.feature_dim} features but the head was "
                                          f"trained on {meta.get('feature_dim')}")
        head = RewardHead(config, backbone.feature_dim)
        if not (folder / HEAD_FILE).is_file():
            raise InvalidRequest("model", f"{folder} lacks {HEAD_FILE}")
        try:
            head.load_state_dict(load_file(str(folder / HEAD_FILE)), strict=True)
        except RuntimeError as exc:
            raise InvalidRequest("model", f"{folder / HEAD_FILE} does not match its config ({exc})") from None
        out = cls(config, backbone, head, name=folder.name or "reward")
        out.train_summary = dict(meta.get("train") or {})
        return out.to(device).eval()
