"""Stage 5, aesthetics: a scorer interface and its implementations.

Every scorer answers on the LAION aesthetic scale, **0-10** (LAION's predictor gives about 1-10;
4.5 is ordinary web imagery, 6+ is good, 7+ is portfolio-grade). A clip's score is the mean over
`aesthetic.frames` evenly spaced frames.

* `LaionAestheticScorer`: the LAION "improved aesthetic predictor" (an MLP,
  ``sac+logos+ava1-l14-linearMSE.pth``) on L2-normalised CLIP ViT-L/14 image embeddings (OpenAI
  weights). The CLIP tower comes from open_clip when it is installed, else from transformers
  (``openai/clip-vit-large-patch14``: the same weights). Both must be on disk: the scorer never
  downloads; `check()` says what is missing before any work starts.
* `TinyAestheticScorer`: a randomly initialised two-layer CNN built in code from a seed, for
  tests and offline dry runs. Its numbers mean nothing.

Scorers load lazily and drop their model when pickled, so they can be handed to spawn workers.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelUnavailable
from .config import AestheticConfig

LAION_HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"
LAION_HEAD_REPO = "christophschuhmann/improved-aesthetic-predictor"
SCALE = (0.0, 10.0)


class AestheticScorer(abc.ABC):
    """Scores RGB frames on the 0-10 aesthetic scale."""

    name: str = "scorer"

    def check(self) -> None:
        """Raise ModelUnavailable now if the scorer cannot work on this machine."""
        return None  # most need nothing; the ones with weights override it

    @abc.abstractmethod
    def score_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB [N, H, W, 3] -> float [N] on the 0-10 scale."""

    def score_clip(self, images: np.ndarray) -> float:
        scores = np.clip(np.asarray(self.score_images(images), dtype=np.float64), *SCALE)
        return round(float(scores.mean()), 4)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # reloaded lazily in the worker
        return state


def sample_indices(num_frames: int, k: int) -> list[int]:
    """k evenly spaced frame indices, centred in k equal parts of the clip."""
    k = max(1, min(k, num_frames))
    return [min(num_frames - 1, int((i + 0.5) * num_frames / k)) for i in range(k)]


class TinyAestheticScorer(AestheticScorer):
    """A random 2-layer CNN (deterministic from `seed`) with a sigmoid onto 0-10."""

    name = "tiny"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._model = torch.nn.Sequential(
                    torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                    torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 1),
                ).eval()
        return self._model

    def score_images(self, images: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        model = self._load()
        small = np.stack([cv2.resize(im, (64, 64), interpolation=cv2.INTER_AREA) for im in images])
        x = torch.from_numpy(small).permute(0, 3, 1, 2).double().div(255.0)
        with torch.inference_mode():
            # float64 so that thread count (serial vs worker processes) cannot change the digits
            out = model.double()(x).squeeze(1).mul(4.0).sigmoid().mul(10.0)
        return out.numpy()


class LaionAestheticScorer(AestheticScorer):
    """LAION improved aesthetic predictor on CLIP ViT-L/14 embeddings (module docstring)."""

    name = "laion"

    def __init__(self, head_weights: Path, clip_model: str, device: str = "cpu", cache_dir: Path | None = None) -> None:
        self.head_weights = Path(head_weights)
        self.clip_model = clip_model
        self.device = device
        self.cache_dir = cache_dir
        self._model: Any = None

    def check(self) -> None:
        if not self.head_weights.is_file():
            raise ModelUnavailable(
                "laion-aesthetic", f"{LAION_HEAD_REPO} ({LAION_HEAD_FILE})",
                f"the MLP head is not at {self.head_weights}; download {LAION_HEAD_FILE} there (or set "
                "aesthetic.head_weights), or run with aesthetic.scorer: none.")
        self._clip_folder()

    def _clip_folder(self) -> Path | None:
        """The transformers CLIP folder (None when open_clip will provide the tower)."""
        try:
            import open_clip  # noqa: F401

            return None
        except ImportError:
            pass
        local = Path(self.clip_model).expanduser()
        if local.is_dir():
            return local
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(self.clip_model, local_files_only=True, cache_dir=self.cache_dir))
        except Exception:  # noqa: BLE001 - every hub error here means "not in the cache"
            raise ModelUnavailable(
                "clip-vit-l-14", self.clip_model,
                f"CLIP ViT-L/14 is not in the local hub cache; on a machine with network run "
                f"`hf download {self.clip_model}` (or set aesthetic.clip_model to a local folder), "
                "or run with aesthetic.scorer: none.") from None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        import torch

        self.check()
        head = _laion_head()
        head.load_state_dict(torch.load(self.head_weights, map_location="cpu"))
        head = head.eval().to(self.device)
        folder = self._clip_folder()
        if folder is None:
            import open_clip

            model, _, preprocess = open_clip.create_model_and_transforms("ViT-L-14", pretrained="openai")
            model = model.eval().to(self.device)
            self._model = ("open_clip", model, preprocess, head)
        else:
            from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

            model = CLIPVisionModelWithProjection.from_pretrained(folder).eval().to(self.device)
            self._model = ("transformers", model, CLIPImageProcessor.from_pretrained(folder), head)
        return self._model

    def score_images(self, images: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        kind, model, preprocess, head = self._load()
        pil = [Image.fromarray(im) for im in images]
        with torch.inference_mode():
            if kind == "open_clip":
                x = torch.stack([preprocess(im) for im in pil]).to(self.device)
                emb = model.encode_image(x)
            else:
                x = preprocess(images=pil, return_tensors="pt")["pixel_values"].to(self.device)
                emb = model(pixel_values=x).image_embeds
            emb = emb / emb.norm(dim=-1, keepdim=True)
            return head(emb.float()).squeeze(-1).cpu().double().numpy()


def _laion_head() -> Any:
    """The predictor's MLP with the original layer indices, so its state dict loads as is."""
    import torch

    class AestheticMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(768, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
                torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
                torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

        def forward(self, x: Any) -> Any:
            return self.layers(x)

    return AestheticMLP()


def make_scorer(cfg: AestheticConfig, models_dir: Path, cache_dir: Path | None = None) -> AestheticScorer | None:
    """The scorer the config names (None for `none`); nothing is loaded yet."""
    if cfg.scorer == "none":
        return None
    if cfg.scorer == "tiny":
        return TinyAestheticScorer(cfg.seed)
    head = Path(cfg.head_weights).expanduser() if cfg.head_weights else models_dir / "aesthetic" / LAION_HEAD_FILE
    return LaionAestheticScorer(head, cfg.clip_model, cfg.device, cache_dir)
