"""Does the mini model follow its tags? Camera and timing adherence, read from pixels.

A grid of camera.movement x style.timing x seeds is generated with the tags given through the
model's tag encoder and a narrative that names only the character (never the camera or the
timing), and each clip is read by the eval runner's own metrics (engine/eval/metrics): the
camera class from the global flow, the timing from held frames. `load_mini` reads a train-mini
checkpoint or a shipped folder, so the learning curve and the shipped model are measured alike.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import InvalidRequest

CAMERAS = ("static", "pan", "tilt", "zoom_in", "zoom_out")
TIMINGS = ("on_ones", "on_twos", "on_threes")


@dataclass
class Adherence:
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def share(self, key: str) -> float:
        return sum(r[key] for r in self.rows) / max(1, len(self.rows))

    def interval(self, key: str) -> tuple[float, float]:
        return wilson(sum(r[key] for r in self.rows), len(self.rows))

    def confusion(self, truth: str, predicted: str) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = defaultdict(Counter)
        for r in self.rows:
            out[r[truth]][r[predicted]] += 1
        return {k: dict(v) for k, v in out.items()}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a share (sound at small n and near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load_mini(folder: str | Path) -> tuple[Any, Any]:
    """(pipeline, tag channel) of a train-mini checkpoint (step-N) or a shipped folder (assets/mini)."""
    from safetensors.torch import load_file

    from ..core.conditioning import attach_tag_encoder
    from ..core.families.mini import MiniVAE, build_mini_pipeline
    from ..core.pks import load_taxonomy
    from ..core.tag_encoder import load_tag_encoder
    from .mini_train import MiniRecipe, transformer_config

    folder = Path(folder)
    if (folder / "transformer.safetensors").is_file():  # a checkpoint
        state = json.loads((folder / "state.json").read_text())
        config = state.get("transformer") or transformer_config(MiniRecipe(**state["recipe"]))
        weights = folder / "transformer.safetensors"
    elif (folder / "transformer" / "config.json").is_file():  # shipped
        config = {k: v for k, v in json.loads((folder / "transformer" / "config.json").read_text()).items()
                  if not k.startswith("_")}
        weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    else:
        raise InvalidRequest("checkpoint", f"{folder} is neither a train-mini checkpoint nor a shipped mini folder")
    pipe = build_mini_pipeline(config, vae=MiniVAE.from_pretrained(folder / "vae").eval())
    pipe.transformer.load_state_dict(load_file(str(weights)))
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    encoder = load_tag_encoder(folder / "tag_encoder", load_taxonomy(), "wan").eval()
    return pipe, attach_tag_encoder(pipe.transformer, encoder)


def generate(pipe: Any, channel: Any, tags: dict[str, Any], narrative: str, seed: int, *, steps: int = 20,
             guidance: float = 4.0, tag_guidance: float | None = None) -> Any:
    """Frames uint8 [F, H, W, 3] of one 32x32, 17-frame clip."""
    import numpy as np
    import torch

    from ..core.conditioning import generate_with_tags

    with torch.no_grad():
        out = generate_with_tags(pipe, channel, tags, tag_guidance_scale=tag_guidance, prompt=narrative,
                                 negative_prompt="", num_frames=17, height=32, width=32, num_inference_steps=steps,
                                 guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
                                 output_type="np")
    return (np.clip(out.frames[0], 0, 1) * 255).round().astype(np.uint8)


CONDITIONS = ("subject+tags", "short", "long", "short+tags", "long+tags")


def measure(pipe: Any, channel: Any, seeds: Sequence[int], *, cameras: Sequence[str] = CAMERAS,
            timings: Sequence[str] = TIMINGS, steps: int = 20, guidance: float = 4.0,
            tag_guidance: float | None = None, condition: str = "subject+tags") -> Adherence:
    """Generate the grid and read every clip's camera and timing back.

    `condition` says where the camera and timing directives go: `subject+tags` (the narrative
    names only the character; the tags carry them), `short` / `long` (the narrative states them,
    no tags: the text channel alone), `short+tags` / `long+tags` (both channels)."""
    from ..eval.metrics.camera import adheres
    from ..eval.metrics.score import MetricConfig, rgb_to_gray, score_frames
    from .config import sample_truth
    from .mini_train import world_for_mini
    from .narrative import narratives, subject

    if condition not in CONDITIONS:
        raise InvalidRequest("condition", f"'{condition}' is not one of {', '.join(CONDITIONS)}")
    result, started = Adherence(), time.perf_counter()
    world = world_for_mini()
    for camera in cameras:
        for timing in timings:
            for seed in seeds:
                truth = sample_truth(world, 900_000 + seed, camera=camera, timing=timing)
                short, long = narratives(truth)
                narrative = {"subject": subject(truth), "short": short, "long": long}[condition.split("+")[0]]
                tags = {"camera.movement": camera, "style.timing": timing} if condition.endswith("tags") else {}
                frames = generate(pipe, channel, tags, narrative, seed, steps=steps, guidance=guidance,
                                  tag_guidance=tag_guidance)
                score = score_frames(rgb_to_gray(frames, 192), 24.0, MetricConfig(),
                                     {"camera.movement": camera, "style.timing": timing})
                result.rows.append({"camera": camera, "timing": timing, "seed": seed,
                                    "camera_read": score.camera.klass, "timing_read": score.timing,
                                    "camera_ok": bool(adheres(camera, score.camera)),
                                    "timing_ok": score.timing == timing})
    result.seconds = time.perf_counter() - started
    return result


__all__ = ["Adherence", "CAMERAS", "CONDITIONS", "TIMINGS", "generate", "load_mini", "measure", "wilson"]
