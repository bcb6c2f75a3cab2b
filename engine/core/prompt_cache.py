"""Encoded prompts kept on disk, so a regeneration, a Best of N or a seed sweep skips the text encoder.

An entry is keyed by the model's text-encoder files (name, size, mtime), the compiled prompt, the
negative prompt, the token length, whether guidance needs the negative branch and the dtype with
the quantization mode ("bfloat16/quanto-int8"). The
folder is bounded (oldest entries go first); a damaged entry is dropped and encoded again.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_BYTES = 2 * 2**30  # UMT5-XXL: about 8 MB per prompt pair at 512 tokens in bf16


class PromptCache:
    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.hits = 0  # for the progress line and tests: how often the encoder was skipped

    @staticmethod
    def key(model_folder: Path | None, model_id: str, prompt: str, negative: str | None, max_tokens: int,
            with_negative: bool, dtype: str) -> str:
        files: list[tuple[str, int, int]] = []
        if model_folder is not None and (model_folder / "text_encoder").is_dir():
            files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                           for p in (model_folder / "text_encoder").rglob("*") if p.is_file())
        data = [1, model_id, files, prompt, negative or "", max_tokens, with_negative, dtype]
        return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str, device: Any, dtype: Any) -> tuple[Any, Any] | None:
        path = self.folder / f"{key}.safetensors"
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
            pos = tensors["prompt"].to(device=device, dtype=dtype)
            neg = tensors["negative"].to(device=device, dtype=dtype) if "negative" in tensors else None
        except Exception as exc:  # noqa: BLE001 - a damaged entry is only a miss
            log.warning("dropping the damaged prompt cache entry %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        path.touch()  # recently used: evicted last
        self.hits += 1
        return pos, neg

    def put(self, key: str, pos: Any, neg: Any | None) -> None:
        from safetensors.torch import save_file

        from .toolkit.files import atomic_path

        tensors = {"prompt": pos.detach().to("cpu").contiguous()}
        if neg is not None:
            tensors["negative"] = neg.detach().to("cpu").contiguous()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.folder / f"{key}.safetensors") as tmp:
                save_file(tensors, str(tmp))
            self._evict()
        except OSError as exc:  # a full disk costs the next encode, never this clip
            log.warning("could not keep the encoded prompt: %s", exc)

    def _evict(self) -> None:
        entries = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        while entries and total > self.max_bytes:
            oldest = entries.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
