"""Latent and text-embedding cache: encode once, train many times without the VAE or text encoder.

Layout under the cache folder::

    latents/<key>.safetensors   one file per clip sample: "latents" [C, F', H', W']
    text/<key>.safetensors      one file per distinct prompt: "prompt_embeds" (+ family extras)

A key hashes everything the tensor depends on: the model's VAE or text-encoder config, the cache
dtype, the clip file (path, size, mtime), its bucket and frame indices, or the prompt text. A
changed clip or setting therefore gets a new file, never a stale one. Files are written to a
temporary name and renamed into place, so an interrupted caching run leaves only whole files
and the next run carries on where it stopped (existing keys are skipped). Under several
processes, each encodes every world-size-th missing item.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..core.toolkit.files import atomic_path
from .dataset import Planned

CACHE_VERSION = 1
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _config_of(module: Any) -> Any:
    cfg = getattr(module, "config", None)
    if cfg is None:
        return type(module).__name__
    if hasattr(cfg, "to_dict"):  # transformers configs
        return cfg.to_dict()
    try:
        return dict(cfg)
    except (TypeError, ValueError):
        return str(cfg)


def files_signature(folder: Path | None, subfolders: Iterable[str]) -> list[Any]:
    """Names, sizes and times of a model's component files: weights changed means new keys."""
    if folder is None:
        return []
    out = []
    for sub in subfolders:
        d = Path(folder) / sub
        if d.is_dir():
            for f in sorted(d.rglob("*")):
                if f.is_file():
                    st = f.stat()
                    out.append([f.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns])
    return out


@dataclass(frozen=True)
class CacheKeys:
    """Computes cache keys for one model + cache dtype."""

    vae_sig: str
    text_sig: str

    @classmethod
    def for_pipeline(cls, pipe: Any, model_id: str, dtype: str, max_tokens: int,
                     folder: Path | None = None) -> "CacheKeys":
        vae = _digest([CACHE_VERSION, model_id, type(pipe.vae).__name__, _config_of(pipe.vae), dtype,
                       files_signature(folder, ["vae"])])
        te = getattr(pipe, "text_encoder", None)
        te2 = getattr(pipe, "text_encoder_2", None)
        text = _digest([CACHE_VERSION, model_id, type(te).__name__, _config_of(te), type(te2).__name__,
                        _config_of(te2) if te2 is not None else None, dtype, max_tokens,
                        files_signature(folder, ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"])])
        return cls(vae, text)

    def latent_key(self, p: Planned) -> str:
        st = p.clip.path.stat()
        return _digest([self.vae_sig, str(p.clip.path.resolve()), st.st_size, st.st_mtime_ns, p.width, p.height,
                        list(p.frames)])

    def text_key(self, prompt: str) -> str:
        return _digest([self.text_sig, prompt])


class FeatureCache:
    """Reads and writes the cache folder (see module docstring)."""

    def __init__(self, root: Path, dtype: str = "bfloat16") -> None:
        self.root = Path(root)
        self.dtype = _DTYPES[dtype]
        (self.root / "latents").mkdir(parents=True, exist_ok=True)
        (self.root / "text").mkdir(parents=True, exist_ok=True)
        self._memo: dict[Path, dict[str, torch.Tensor]] = {}

    def latent_path(self, key: str) -> Path:
        return self.root / "latents" / f"{key}.safetensors"

    def text_path(self, key: str) -> Path:
        return self.root / "text" / f"{key}.safetensors"

    def write(self, path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None) -> None:
        from safetensors.torch import save_file

        data = {k: v.detach().to("cpu", self.dtype if v.is_floating_point() else v.dtype).contiguous()
                for k, v in tensors.items()}
        with atomic_path(path, suffix=".tmp") as tmp:  # a killed run never leaves half a cache file
            save_file(data, str(tmp), metadata={"meta": json.dumps(dict(meta or {}), default=str)})

    def read(self, path: Path, keep: bool = False) -> dict[str, torch.Tensor]:
        """Tensors of a cache file; `keep` holds them in memory (only for the few read every step)."""
        from safetensors.torch import load_file

        got = self._memo.get(path)
        if got is None:
            got = load_file(str(path))
            if keep:
                self._memo[path] = got
        return got


@dataclass
class CacheStats:
    latents_written: int = 0
    latents_present: int = 0
    texts_written: int = 0
    texts_present: int = 0

    def describe(self) -> str:
        return (f"latents: {self.latents_written} encoded, {self.latents_present} already cached; "
                f"prompts: {self.texts_written} encoded, {self.texts_present} already cached")


def build_cache(
    pipe: Any,
    ops: Any,
    cache: FeatureCache,
    keys: CacheKeys,
    planned: Sequence[Planned],
    prompts: Iterable[str],
    *,
    max_tokens: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
    load_video: Callable[[Planned], torch.Tensor] | None = None,
) -> CacheStats:
    """Encode every missing latent and prompt of this rank's share; returns what it did."""
    from .dataset import load_video_tensor

    load_video = load_video or load_video_tensor
    stats = CacheStats()
    todo_text = [t for t in dict.fromkeys(prompts)]
    todo_lat = list(planned)
    mine_text = [t for i, t in enumerate(todo_text) if i % world_size == rank]
    mine_lat = [p for i, p in enumerate(todo_lat) if i % world_size == rank]
    total = len(mine_text) + len(mine_lat)
    done = 0
    with torch.no_grad():
        for text in mine_text:
            path = cache.text_path(keys.text_key(text))
            if path.is_file():
                stats.texts_present += 1
            else:
                cache.write(path, ops.encode_text(pipe, text, max_tokens), {"prompt": text})
                stats.texts_written += 1
            done += 1
            if progress:
                progress(done, total)
        for p in mine_lat:
            path = cache.latent_path(keys.latent_key(p))
            if path.is_file():
                stats.latents_present += 1
            else:
                video = load_video(p).to(device)
                latents = ops.encode_video(pipe.vae, video)
                cache.write(path, {"latents": latents},
                            {"clip": str(p.clip.path), "bucket": p.bucket, "frames": list(p.frames)})
                stats.latents_written += 1
            done += 1
            if progress:
                progress(done, total)
    return stats
