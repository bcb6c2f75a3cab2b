"""Validation samples during training: fixed prompts and seeds, rendered with the adapter as trained.

At every validation step the main process renders each prompt of ``validation.prompts`` with the
pipeline whose transformer is being trained (the adapter hooks are live, the model switched to
eval), using the prompt embeddings cached before training (no text encoder in memory). Each
clip is written to ``<output_dir>/samples/step-XXXXXX/NN-<slug>.mp4`` with its settings embedded,
and entered into the studio history (``source="training"``, ``checkpoint`` = the adapter the
samples were made with), so trainers can compare checkpoints in the studio and load the adapter
from there. That adapter (and the tag encoder) is kept beside the samples, in
``samples/step-XXXXXX/adapter`` (hard links where the file system allows): ``train.keep_checkpoints``
prunes old checkpoints, and a history entry must not point at a folder that is gone. A history
failure is logged and does not stop training.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, ContextManager, Protocol

import numpy as np
import torch

from ..core.errors import InvalidRequest
from ..core.requests import AdapterRef, GenerationRequest
from ..core.settings import Settings
from .caching import CacheKeys, FeatureCache
from .config import RunConfig

__all__ = ["ValidationHost", "Validator", "validation_texts"]

_log = logging.getLogger(__name__)


class ValidationHost(Protocol):
    """What the validator needs of a prepared run (`Trainer` is one): read-only, all public."""

    @property
    def config(self) -> RunConfig: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def out(self) -> Path: ...
    @property
    def pipe(self) -> Any: ...  # the diffusers pipeline whose transformer is being trained
    @property
    def ops(self) -> Any: ...  # the family's FamilyOps
    @property
    def channel(self) -> Any: ...  # the tag channel, or None
    @property
    def cache(self) -> FeatureCache: ...
    @property
    def keys(self) -> CacheKeys: ...
    @property
    def val_texts(self) -> list[str]: ...  # validation_texts() of the run: prompts, then the negative
    @property
    def device(self) -> torch.device: ...
    def autocast(self) -> ContextManager[Any]: ...
    def log(self, message: str) -> None: ...


def validation_texts(config: RunConfig, taxonomy: Any) -> list[str]:
    """The compiled text of every validation prompt, then the negative prompt (all cached up front)."""
    v = config.validation
    texts = []
    for i, prompt in enumerate(v.prompts):
        try:
            tags = taxonomy.validate_tags(prompt.tags)
        except InvalidRequest as exc:
            raise InvalidRequest(f"validation.prompts[{i}].{exc.field}", exc.reason) from None
        compiled = bool(config.data.compile_tags)
        texts.append(taxonomy.compile_prompt(prompt.narrative, tags) if compiled else prompt.narrative)
    texts.append(v.negative_prompt)
    return texts


class Validator:
    def __init__(self, host: ValidationHost) -> None:
        self.t = host
        self._history: Any = None
        self._db: Any = None

    def _history_service(self) -> Any:
        if self._history is None:
            from ..storage.db import open_database
            from ..storage.clips import HistoryService

            settings = self.t.settings
            settings.ensure_dirs()
            self._db = open_database(settings.database_target)
            self._history = HistoryService(self._db, settings.media_dir)
        return self._history

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None
            self._history = None

    def _settings(self) -> tuple[int, int, int, int]:
        cfg = self.t.config
        v = cfg.validation
        base = cfg.data.base_size
        assert base is not None  # parse_config fills it from the model
        width = v.width or base[0]
        height = v.height or base[1]
        frames = v.num_frames or cfg.data.num_frames
        fps = v.fps or int(round(cfg.data.fps or 16))
        return width, height, frames, fps

    def run(self, step: int, checkpoint: Path) -> tuple[list[Path], list[int]]:
        from ..core.export import export_clip
        from ..storage.clips import MediaFiles, slugify

        t = self.t
        cfg = t.config
        v = cfg.validation
        pipe = t.pipe
        width, height, frames, fps = self._settings()
        cache, keys = t.cache, t.keys
        out_dir = t.out / "samples" / f"step-{step:06d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        adapter_dir, tag_encoder_dir = _keep_weights(checkpoint, out_dir)
        neg = cache.read(cache.text_path(keys.text_key(v.negative_prompt))) if v.guidance > 1.0 else None
        written: list[Path] = []
        ids: list[int] = []
        transformer = pipe.transformer
        pipe.vae.to(t.device)
        was_training = transformer.training
        transformer.eval()
        try:
            for i, prompt in enumerate(v.prompts):
                compiled = t.val_texts[i]
                pos = cache.read(cache.text_path(keys.text_key(compiled)))
                generator = torch.Generator(device="cpu").manual_seed(v.seed + i)
                call = dict(height=height, width=width, num_frames=frames, num_inference_steps=v.steps,
                            guidance_scale=v.guidance, generator=generator, output_type="np",
                            **t.ops.pipeline_text_kwargs(_to(pos, t), _to(neg, t) if neg is not None else None,
                                                         cfg.data.max_text_tokens))
                with torch.no_grad(), t.autocast():
                    if t.channel is not None and prompt.tags:
                        from ..core.conditioning import generate_with_tags

                        out = generate_with_tags(pipe, t.channel, dict(prompt.tags), v.tag_guidance, **call)
                    else:
                        out = pipe(**call)
                video = np.asarray(out.frames[0], dtype=np.float32)
                video = (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
                request = GenerationRequest(
                    narrative=prompt.narrative, model=cfg.model, negative_prompt=v.negative_prompt,
                    tags=dict(prompt.tags), seed=v.seed + i, width=width, height=height, num_frames=frames, fps=fps,
                    steps=v.steps, guidance=v.guidance, adapters=(AdapterRef(str(adapter_dir)),),
                    tag_encoder=None if tag_encoder_dir is None or not prompt.tags else str(tag_encoder_dir),
                    tag_guidance=v.tag_guidance if tag_encoder_dir is not None and prompt.tags else None,
                    # as rendered: the tags in the text only when data.compile_tags put them there
                    tags_in_prompt=bool(cfg.data.compile_tags) or tag_encoder_dir is None or not prompt.tags,
                )
                settings = {"request": request.to_dict(), "compiled_prompt": compiled, "checkpoint": str(adapter_dir),
                            "training_step": step, "training_run": str(t.out)}
                path = out_dir / f"{i:02d}-{slugify(prompt.narrative)}.mp4"
                clip = export_clip(video, fps, path, settings, poster=True)
                written.append(clip.video)
                if v.record_history:
                    def write(folder: Path, clip: Any = clip) -> MediaFiles:
                        video_copy = shutil.copy2(clip.video, folder / "clip.mp4")
                        poster = shutil.copy2(clip.poster, folder / "clip.jpg") if clip.poster else None
                        return MediaFiles(video=Path(video_copy), poster=Path(poster) if poster else None)

                    try:
                        record = self._history_service().record_finished(
                            request, compiled, write, source="training", checkpoint=str(adapter_dir))
                        ids.append(record.id)
                    except Exception as exc:  # noqa: BLE001 - a history problem must not end a long run
                        _log.error("validation sample %s was not added to the studio history: %s", path, exc)
                        t.log(f"warning: validation sample not added to the history ({exc})")
        finally:
            transformer.train(was_training)
        t.log(f"step {step}: {len(written)} validation sample(s) in {out_dir}")
        return written, ids


def _keep_weights(checkpoint: Path, out_dir: Path) -> tuple[Path, Path | None]:
    """Copy (hard-link) the checkpoint's adapter and tag encoder into the samples folder."""
    import os

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    kept: list[Path | None] = []
    for name in ("adapter", "tag_encoder"):
        src, dst = checkpoint / name, out_dir / name
        if not src.is_dir():
            kept.append(None)
            continue
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, copy_function=link_or_copy)
        kept.append(dst)
    assert kept[0] is not None  # a checkpoint always holds its adapter
    return kept[0], kept[1]


def _to(text: Any, t: ValidationHost) -> dict[str, torch.Tensor]:
    dtype = next(t.pipe.transformer.parameters()).dtype
    return {k: v.to(t.device, dtype if v.is_floating_point() else v.dtype) for k, v in text.items()}
