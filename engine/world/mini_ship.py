"""Write a checkpoint of `train-mini` as the weights the studio ships (assets/mini).

The folder holds the transformer (config + safetensors), the VAE, the tag encoder, `recipe.json` (the
recipe, the world, the step, and the command that rebuilds it) and the training log, every
10th step, as `train_log.jsonl`. engine/core/mini_model.py turns it into a diffusers folder.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core.toolkit.files import staged_folder, write_text

LOG_EVERY = 10


def ship(checkpoint: Path, to: Path, run: Path | None = None) -> Path:
    """Copy `checkpoint` (a train-mini step folder) into `to`, replacing what is there."""
    from ..core.mini_model import REBUILD

    state = json.loads((checkpoint / "state.json").read_text())
    config = state["transformer"]
    with staged_folder(to) as staging:
        (staging / "transformer").mkdir()
        shutil.copy2(checkpoint / "transformer.safetensors", staging / "transformer" / "diffusion_pytorch_model.safetensors")
        write_text(staging / "transformer" / "config.json",
                   json.dumps({"_class_name": "MiniTransformer3DModel", **config}, indent=2))
        shutil.copytree(checkpoint / "tag_encoder", staging / "tag_encoder")
        shutil.copytree(checkpoint / "vae", staging / "vae")
        recipe = {**state, "command": REBUILD + f" --steps {state['recipe']['steps']}"}
        write_text(staging / "recipe.json", json.dumps(recipe, indent=2) + "\n")
        log = (run or checkpoint.parents[1]) / "train_log.jsonl"
        if log.is_file():
            rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r["step"] % LOG_EVERY == 0 and r["step"] <= state["step"]]
            write_text(staging / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        for path in staging.rglob("*"):  # files of the repository: readable by everyone
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
    return to


__all__ = ["ship"]
