"""The transformers VLM backend of AniCaption (Qwen2.5-VL family by default).

Weights come from a local folder or the Hugging Face cache only; nothing is downloaded during a
curation run. When they are missing, `check()` raises ModelUnavailable naming the repo and how
to get it. Decoding is greedy, so the same clip gives the same caption.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelUnavailable

FRAME_MAX_SIDE = 448  # ~ 16x16 patches of 28 px per frame: 8 frames fit a 7B model's context easily


class TransformersVLM:
    """Any image-text-to-text chat model that transformers' Auto classes load (Qwen2.5-VL, ...)."""

    def __init__(self, model: str, *, device: str = "auto", max_new_tokens: int = 512,
                 cache_dir: Path | None = None, name: str = "qwen2.5-vl") -> None:
        self.model = model
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.cache_dir = cache_dir
        self.name = name
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def folder(self) -> Path:
        local = Path(self.model).expanduser()
        if local.is_dir():
            return local
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(self.model, local_files_only=True, cache_dir=self.cache_dir))
        except Exception:  # noqa: BLE001 - every hub error here means "not in the local cache"
            raise ModelUnavailable(
                self.name, self.model,
                f"it is not in the local Hugging Face cache; on a machine with network run `hf download {self.model}` "
                "(or set caption.model to a local folder), or run with caption.captioner: none.") from None

    def check(self) -> None:
        self.folder()

    def _load(self) -> Any:
        if self._model is None:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            folder = self.folder()
            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            processor = AutoProcessor.from_pretrained(folder)
            model = AutoModelForImageTextToText.from_pretrained(folder, dtype=dtype).eval().to(device)
            self._model = (processor, model, device)
        return self._model

    def generate(self, frames: np.ndarray, messages: list[dict[str, str]]) -> str:
        import torch
        from PIL import Image

        processor, model, device = self._load()
        images = []
        for frame in frames:
            im = Image.fromarray(frame)
            im.thumbnail((FRAME_MAX_SIDE, FRAME_MAX_SIDE))
            images.append(im)
        chat: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            content: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}]
            if i == 0:
                content = [{"type": "image", "image": im} for im in images] + content
            chat.append({"role": m["role"], "content": content})
        inputs = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return processor.batch_decode(new, skip_special_tokens=True)[0]
