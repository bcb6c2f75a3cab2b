"""Write a world: clips as mp4, a curation manifest `engine train` reads, and the truth of each clip.

`python -m engine world make --clips N --out DIR [--seed S] [--config world.yaml]` writes

* ``clips/world-SEED-NNNNN.mp4`` (the clip, its truth embedded like the studio's settings);
* ``manifest.jsonl``: one curation-manifest row per clip (docs/curation.md) with the clip's PKS
  tags, its short narrative as the caption, and two extra keys training ignores: ``narrative_long``
  and ``world`` (the full truth: camera path, timing, character, effects, every deformation event
  with its frame range, and a per-frame clean / intentional / failure label);
* ``world.json``: the config and the seed, so the same command rebuilds the same clips.

Clip `n` of a world with seed `s` is drawn from seed ``s * 1_000_003 + n``: the same clip whatever
`--clips` is, so a larger world extends a smaller one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..core.errors import InvalidRequest
from ..core.toolkit.config import build, plain
from ..core.toolkit.files import write_text
from .config import ClipTruth, WorldConfig, sample_truth
from .narrative import narratives
from .render import CHARACTERS, render_clip

MAX_CLIPS = 100_000


def clip_seed(world_seed: int, n: int) -> int:
    return world_seed * 1_000_003 + n


def load_config(path: str | Path | None) -> WorldConfig:
    """A world config from YAML (unknown keys and values refused, naming the field) or the defaults."""
    if path is None:
        return WorldConfig()
    from ..core.yamlsafe import load_yaml_text

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest("config", f"cannot read {source}: {exc.strerror or exc}") from None
    return build(WorldConfig, load_yaml_text(text, str(source), "config"))


def manifest_row(truth: ClipTruth, rel: str) -> dict[str, Any]:
    short, long = narratives(truth)
    motion = round(truth.speed / truth.fps * 1.0, 4)  # % of the diagonal per frame
    return {
        "clip": rel, "clip_id": Path(rel).stem, "source": "world", "start_s": 0.0,
        "end_s": round(truth.frames / truth.fps, 4), "fps": float(truth.fps), "num_frames": truth.frames,
        "width": truth.width, "height": truth.height, "timing": truth.timing,
        "scores": {"motion": motion, "optical": motion, "aesthetic": 5.0, "combined": 10.0},
        "selected": True, "reason": "world", "tags": truth.tags(), "caption": short,
        "stats": {"distinct_drawings": len(truth.drawing_starts()), "hold_ratio": round(1 - 1 / truth.hold, 4),
                  "motion_per_s": round(truth.speed, 4)},
        "narrative_long": long, "world": truth.to_json(),
    }


def make_world(out: str | Path, clips: int, *, seed: int = 0, cfg: WorldConfig | None = None,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Write `clips` world clips and their manifest into `out`; returns the manifest's path.

    Clips already written with the same config and seed are kept (a rerun extends or resumes)."""
    from ..core.export import write_mp4

    if isinstance(clips, bool) or not isinstance(clips, int) or not 1 <= clips <= MAX_CLIPS:
        raise InvalidRequest("clips", f"must be a whole number from 1 to {MAX_CLIPS}, got {clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 31:
        raise InvalidRequest("seed", f"must be a whole number from 0 to {2 ** 31 - 1}, got {seed!r}")
    cfg = cfg or WorldConfig()
    root = Path(out)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    recipe = {"seed": seed, "config": plain(cfg), "format": 1}
    recipe_path = root / "world.json"
    if recipe_path.is_file():
        try:
            old = json.loads(recipe_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old is not None and {k: old.get(k) for k in recipe} != recipe:
            raise InvalidRequest("out", f"{root} holds a world made with another seed or config; "
                                        "choose an empty folder")
    write_text(recipe_path, json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    rows = []
    for n in range(clips):
        truth = sample_truth(cfg, clip_seed(seed, n))
        rel = f"clips/world-{seed}-{n:05d}.mp4"
        row = manifest_row(truth, rel)
        if not (root / rel).is_file():
            write_mp4(render_clip(truth), truth.fps, root / rel, {"world": row["world"], "tags": row["tags"]})
        rows.append(row)
        if progress is not None:
            progress(n + 1, clips)
    manifest = root / "manifest.jsonl"
    write_text(manifest, "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows))
    return manifest


def character_names() -> tuple[str, ...]:
    return tuple(c[2] for c in CHARACTERS)


__all__ = ["MAX_CLIPS", "character_names", "clip_seed", "load_config", "make_world", "manifest_row"]
