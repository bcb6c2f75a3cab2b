"""The built-in `mini` model: weights trained on the studio's world, shipped in assets/mini.

Like the preview, it is turned into an ordinary diffusers folder (`ensure_mini_model`) and loaded
through the same loader as every checkpoint: the preview's text encoder and tokenizer, and the
trained VAE, transformer and tag encoder from assets/mini (written by
`python -m engine world train-mini --ship assets/mini`, docs/world.md). The folder is rebuilt
when the shipped weights change (their hash is its marker).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .errors import ModelUnavailable

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "mini"
WEIGHTS_ENV = "ANIMATRIX_MINI_WEIGHTS"  # another folder of shipped weights (a retrained mini, before it ships)
_MARKER = "animatrix_mini.json"
TAG_ENCODER = "tag_encoder"
REBUILD = "python -m engine world train-mini --out runs/mini --ship assets/mini"


def assets_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV) or ASSETS)


def shipped(assets: Path | None = None) -> bool:
    return ((assets or assets_dir()) / "transformer" / "diffusion_pytorch_model.safetensors").is_file()


def _fingerprint(assets: Path) -> str:
    digest = hashlib.sha256()
    for part in ("transformer/diffusion_pytorch_model.safetensors", "transformer/config.json",
                 f"{TAG_ENCODER}/tag_encoder.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "vae/config.json"):
        path = assets / part
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def ensure_mini_model(models_dir: Path, assets: Path | None = None) -> Path:
    """The diffusers folder of the mini model, (re)built from the shipped weights when needed."""
    assets = assets or assets_dir()
    if not shipped(assets):
        raise ModelUnavailable("mini", "built in", f"Its weights are missing from {assets}; rebuild them with "
                                                   f"`{REBUILD}`", reason="its shipped weights are missing")
    target = Path(models_dir) / "mini"
    want = _fingerprint(assets)
    try:
        if json.loads((target / _MARKER).read_text()).get("weights") == want:
            return target
    except (OSError, ValueError):
        pass
    from .preview import _build_lock

    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target.parent / ".mini.lock"):
        return _build(target, assets, want)


def _build(target: Path, assets: Path, want: str) -> Path:
    from safetensors.torch import load_file

    from .families.mini import MiniVAE, build_mini_pipeline
    from .toolkit.files import staged_folder

    config = json.loads((assets / "transformer" / "config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    pipe = build_mini_pipeline(config, vae=MiniVAE.from_pretrained(assets / "vae"))
    pipe.transformer.load_state_dict(load_file(str(assets / "transformer" / "diffusion_pytorch_model.safetensors")))
    with staged_folder(target) as staging:  # swapped in whole: a crash never leaves half a model
        pipe.save_pretrained(staging, safe_serialization=True)
        shutil.copytree(assets / TAG_ENCODER, staging / TAG_ENCODER)
        (staging / _MARKER).write_text(json.dumps({"weights": want}))
    return target


__all__ = ["ASSETS", "REBUILD", "TAG_ENCODER", "WEIGHTS_ENV", "assets_dir", "ensure_mini_model", "shipped"]
