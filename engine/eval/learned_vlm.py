"""The learned metrics that run a vision-language checkpoint through transformers: CLIP/SigLIP
text-video alignment and TIGER-Lab VideoScore (the interface is in engine/eval/learned.py).

Both read their checkpoint from a local folder or from the hub cache, never downloading.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from ..core.settings import Settings
from .weights import even_frames, hub_folder, metric_device, read_clip

CLIP_DEFAULT = "openai/clip-vit-large-patch14"
CLIP_TYPES = ("clip", "siglip")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model", "tokenizer.model")
# OpenAI CLIP's image statistics; SigLIP uses 0.5 everywhere
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

VIDEOSCORE_DEFAULT = "TIGER-Lab/VideoScore"
VIDEOSCORE_DIMS = ("visual_quality", "temporal_consistency", "dynamic_degree", "text_alignment", "factual_consistency")
VIDEOSCORE_FRAMES = 16
# The classes VideoScore checkpoints name, and the module of the mantis-vl package that defines each.
_VIDEOSCORE_CLASSES = {"Idefics2ForSequenceClassification": "mantis.models.idefics2"}
_VIDEOSCORE_LATER = {"Qwen2VLForSequenceClassification": "VideoScore-v1.1 (Qwen2-VL)"}
# The query VideoScore was trained with (its README's regression prompt): the model expects these words.
_VIDEOSCORE_QUERY = (
    "\nSuppose you are an expert in judging and evaluating the quality of AI-generated videos,\n"
    "please watch the following frames of a given video and see the text prompt for generating the video,\n"
    "then give scores from 5 different dimensions:\n"
    "(1) visual quality: the quality of the video in terms of clearness, resolution, brightness, and color\n"
    "(2) temporal consistency, both the consistency of objects or humans and the smoothness of motion or movements\n"
    "(3) dynamic degree, the degree of dynamic changes\n"
    "(4) text-to-video alignment, the alignment between the text prompt and the video content\n"
    "(5) factual consistency, the consistency of the video content with the common-sense and factual knowledge\n"
    "\n"
    "for each dimension, output a float number from 1.0 to 4.0,\n"
    "the higher the number is, the better the video performs in that sub-score, \n"
    "the lowest 1.0 means Bad, the highest 4.0 means Perfect/Real (the video is like a real video)\n"
    "Here is an output example:\n"
    "visual quality: 3.2\n"
    "temporal consistency: 2.7\n"
    "dynamic degree: 4.0\n"
    "text-to-video alignment: 2.3\n"
    "factual consistency: 1.8\n"
    "\n"
    'For this video, the text prompt is "{text_prompt}",\n'
    "all the frames of video are as follows:\n"
)


def _config(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_repo_id(name: str) -> bool:
    return not name.startswith(("/", ".", "~")) and name.count("/") == 1 and not Path(name).expanduser().exists()


def missing(name: str, repo: str, flag: str, what: str) -> str:
    """What to do when neither a folder nor the hub cache holds `name`."""
    if is_repo_id(name):
        return (f"{name} is not in the local hub cache; on a machine with network run `hf download {name}` (or copy "
                f"its folder here and give {flag}=DIR)")
    return (f"no {what} at {name}; put one there (e.g. `hf download {repo} --local-dir {name}` on a machine with "
            f"network, then copy the folder) or give another with {flag}=DIR")


# ------------------------------------------------------------------------------------- CLIP / SigLIP
class ClipMetric:
    """Per PKS axis: mean cosine similarity of the clip (mean of its frames' unit embeddings) with the
    phrases of the axis's tags; `narrative`: with the narrative. Dimensions: the axis ids + narrative."""

    name = "clip"
    needs = f"a transformers CLIPModel or SiglipModel folder with its tokenizer (default {CLIP_DEFAULT} from the hub cache)"
    frames = 8

    def __init__(self, path: str | None, settings: Settings) -> None:
        self.path, self.settings = path, settings
        self.folder: Path | None = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.kind = "clip"

    def available(self, settings: Settings) -> str | None:
        name = self.path or CLIP_DEFAULT
        folder = hub_folder(name, settings)
        if folder is None:
            return missing(name, CLIP_DEFAULT, "--learned clip", "CLIP/SigLIP model (a transformers CLIPModel or "
                                                                 "SiglipModel folder: config.json, weights, tokenizer)")
        config = _config(folder)
        if config is None:
            return f"{folder} holds no readable config.json; it must be a transformers CLIPModel or SiglipModel folder"
        if config.get("model_type") not in CLIP_TYPES:
            return (f"{folder} is a '{config.get('model_type')}' model; the clip metric needs a full CLIP or SigLIP "
                    "model (image and text towers), model_type clip or siglip")
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            return f"{folder} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); copy the checkpoint's tokenizer files there"
        self.folder, self.kind = folder, str(config["model_type"])
        return None

    def prepare(self) -> None:
        if self.model is not None:
            return
        problem = self.available(self.settings)
        if problem is not None:
            raise InvalidRequest("clip", problem)
        from transformers import AutoTokenizer, CLIPModel, SiglipModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the engine's own loads keep it off too
        cls: Any = CLIPModel if self.kind == "clip" else SiglipModel
        try:
            self.model = cls.from_pretrained(str(self.folder), local_files_only=True).eval().to(metric_device(self.settings))
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InvalidRequest("clip", f"{self.folder} could not be loaded ({exc})") from None
        self.mean, self.std = self._stats()

    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        default = (_CLIP_MEAN, _CLIP_STD) if self.kind == "clip" else ((0.5,) * 3, (0.5,) * 3)
        try:
            data = json.loads((Path(str(self.folder)) / "preprocessor_config.json").read_text(encoding="utf-8"))
            return tuple(data["image_mean"]), tuple(data["image_std"])
        except (OSError, ValueError, KeyError, TypeError):
            return default

    def identity(self) -> str:
        return str(self.folder or self.path or CLIP_DEFAULT)

    def _pixels(self, frames: Any) -> Any:
        """CLIP: shorter side to the tower's size, centre crop; SigLIP: squashed to a square."""
        import torch
        import torch.nn.functional as F

        size = int(self.model.config.vision_config.image_size)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        if self.kind == "clip":
            scale = size / min(h, w)
            x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                              align_corners=False, antialias=True)
            top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
            x = x[..., top:top + size, left:left + size]
        else:
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x.clamp(0, 1) - mean) / std).to(self.model.device)

    @staticmethod
    def _pooled(out: Any) -> Any:
        return out if hasattr(out, "norm") else out.pooler_output  # a tensor (transformers 4) or an output (5)

    def texts_by_axis(self, narrative: str, tags: Mapping[str, Any]) -> dict[str, list[str]]:
        from ..core.pks import load_taxonomy

        taxonomy = load_taxonomy()
        out: dict[str, list[str]] = {}
        for field_id, values in taxonomy.validate_tags(dict(tags)).items():
            axis = taxonomy.field(field_id).axis
            out.setdefault(axis, []).extend(taxonomy.value(field_id, v).phrase for v in values)
        if narrative.strip():
            out["narrative"] = [narrative.strip()]
        return out

    def score(self, video: Path, narrative: str, tags: Mapping[str, Any]) -> dict[str, float]:
        import torch

        self.prepare()
        groups = self.texts_by_axis(narrative, tags)
        if not groups:
            return {}
        frames, _fps = read_clip(video)
        texts = [t for group in groups.values() for t in group]
        max_len = int(self.model.config.text_config.max_position_embeddings)
        padding = "max_length" if self.kind == "siglip" else True  # SigLIP was trained on padded text
        enc = self.tokenizer(texts, padding=padding, truncation=True, max_length=max_len, return_tensors="pt")
        enc = {k: v.to(self.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            image = self._pooled(self.model.get_image_features(
                pixel_values=self._pixels(frames[even_frames(len(frames), self.frames)])))
            text = self._pooled(self.model.get_text_features(**enc))
        image = torch.nn.functional.normalize(image.float(), dim=-1).mean(0)
        clip_vec = torch.nn.functional.normalize(image, dim=-1)
        sims = (torch.nn.functional.normalize(text.float(), dim=-1) @ clip_vec).tolist()
        out, i = {}, 0
        for key, group in groups.items():
            out[key] = sum(sims[i:i + len(group)]) / len(group)
            i += len(group)
        return out


# ----------------------------------------------------------------------------------------- VideoScore
class VideoScoreMetric:
    """TIGER-Lab VideoScore (Idefics2 with a 5-output regression head, from the mantis-vl package)."""

    name = "videoscore"
    needs = f"the {VIDEOSCORE_DEFAULT} checkpoint (hub cache or a local folder) and the mantis-vl package"

    def __init__(self, path: str | None, settings: Settings) -> None:
        self.path, self.settings = path, settings
        self.folder: Path | None = None
        self.arch = ""
        self.model: Any = None
        self.processor: Any = None

    def _class(self, arch: str) -> Any:
        import importlib

        module = _VIDEOSCORE_CLASSES.get(arch)
        if module is not None:
            try:
                return getattr(importlib.import_module(module), arch)
            except Exception:  # noqa: BLE001 - mantis missing or built for another transformers
                pass
        import transformers

        return getattr(transformers, arch, None)

    def available(self, settings: Settings) -> str | None:
        import transformers

        name = self.path or VIDEOSCORE_DEFAULT
        folder = hub_folder(name, settings)
        if folder is None:
            return missing(name, VIDEOSCORE_DEFAULT, "--learned videoscore", "VideoScore checkpoint")
        config = _config(folder)
        archs = (config or {}).get("architectures") or []
        arch = str(archs[0]) if archs else ""
        if arch in _VIDEOSCORE_LATER:
            return (f"{folder} is {_VIDEOSCORE_LATER[arch]}; this metric runs the released {VIDEOSCORE_DEFAULT} "
                    "(Idefics2ForSequenceClassification) only")
        if arch not in _VIDEOSCORE_CLASSES:
            return f"{folder} is not a VideoScore checkpoint (config.json names '{arch or 'no architecture'}')"
        if self._class(arch) is None:
            return (f"{folder} holds a {arch} (VideoScore's own head); transformers {transformers.__version__} has no "
                    "such class and the mantis-vl package that defines it (mantis.models.idefics2) is not importable: "
                    "`pip install git+https://github.com/TIGER-AI-Lab/Mantis` (it needs the transformers version "
                    "it pins; a separate environment may be needed)")
        self.folder, self.arch = folder, arch
        return None

    def prepare(self) -> None:
        if self.model is not None:
            return
        problem = self.available(self.settings)
        if problem is not None:
            raise InvalidRequest("videoscore", problem)
        import torch
        from transformers import AutoProcessor
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        device = metric_device(self.settings)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(str(self.folder), local_files_only=True)
            self.model = self._class(self.arch).from_pretrained(str(self.folder), torch_dtype=dtype,
                                                                local_files_only=True).eval().to(device)
        except Exception as exc:  # noqa: BLE001 - mantis against another transformers fails in many ways
            raise InvalidRequest("videoscore", f"{self.folder} ({self.arch}) could not be loaded with the installed "
                                               f"transformers/mantis ({type(exc).__name__}: {exc})") from None

    def identity(self) -> str:
        return str(self.folder or self.path or VIDEOSCORE_DEFAULT)

    def score(self, video: Path, narrative: str, tags: Mapping[str, Any]) -> dict[str, float]:
        import numpy as np
        import torch
        from PIL import Image

        from ..core.pks import load_taxonomy

        self.prepare()
        frames, _fps = read_clip(video)
        picks = np.linspace(0, len(frames) - 1, num=min(VIDEOSCORE_FRAMES, len(frames))).astype(int)
        images = [Image.fromarray(frames[i]) for i in picks]
        text = _VIDEOSCORE_QUERY.format(text_prompt=load_taxonomy().compile_prompt(narrative, dict(tags)))
        text += "<image> " * len(images)
        inputs = self.processor(text=text, images=images, return_tensors="pt")
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0].float().tolist()
        return dict(zip(VIDEOSCORE_DIMS, logits))


__all__ = ["CLIP_DEFAULT", "ClipMetric", "VIDEOSCORE_DEFAULT", "VIDEOSCORE_DIMS", "VideoScoreMetric"]
