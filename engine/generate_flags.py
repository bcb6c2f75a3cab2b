"""The flags of `python -m engine generate`, each with its help, range and default.

Kept apart from engine/cli.py so every flag can say what it takes without the CLI module growing
past its size; the ranges are the ones GenerationRequest checks and the defaults come from the
model registry, so help and checks cannot drift apart.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_generate_parser", "parse_tag"]


def parse_tag(text: str) -> tuple[str, str]:
    """`FIELD=VALUE` as given to --tag (the ids themselves are checked against the taxonomy later)."""
    field, sep, value = text.partition("=")
    if not sep or not field.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=VALUE (e.g. camera.movement=whip_pan; "
                                         "python -m engine tags lists the fields and values)")
    return field.strip(), value.strip()


def _adapter(text: str) -> dict[str, Any]:
    path, sep, strength = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return {"path": path if sep else text, "strength": float(strength) if sep else 1.0}
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not PATH or PATH:STRENGTH") from None


def _cache(text: str) -> tuple[str, float | None]:
    kind, sep, number = text.partition(":")
    try:
        return kind.strip(), float(number) if sep else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not KIND or KIND:NUMBER (e.g. first-block:0.1)") from None


def _model_defaults(attr: str) -> str:
    """'wan2.1-t2v-1.3b 832, ..., preview 64': each registry model's own default for one setting."""
    from .core.registry import REGISTRY

    return ", ".join(f"{spec.id} {getattr(spec.defaults, attr):g}" for spec in REGISTRY.values())


def add_generate_parser(sub: Any) -> None:
    """Register `generate` on the engine's subcommand parser."""
    from .core.registry import REGISTRY, model_ids
    from .core.requests import (ATTENTION_BACKENDS, CACHE_KINDS, MAX_SEED, OFFLOAD_MODES, PARALLEL_MODES,
                                QUANTIZATION_MODES, SPEED_PROFILES)
    from .core.settings import Settings

    most_frames = max(s.max_frames for s in REGISTRY.values())
    widest = max(s.max_side for s in REGISTRY.values())
    g = sub.add_parser("generate", help="generate a clip and record it in the history",
                       description="Unset numbers take the chosen model's defaults (listed per flag). Tag ids: "
                                   "python -m engine tags; presets: python -m engine presets list.")
    g.add_argument("--model", help=f"model id ({', '.join(model_ids())}) or a local diffusers folder "
                                   f"(default: {Settings().default_model}, or ANIMATRIX_DEFAULT_MODEL)")
    g.add_argument("--narrative", metavar="TEXT", help="what happens in the clip, in words (required unless --preset/--from "
                                       "gives one)")
    g.add_argument("--negative", dest="negative_prompt", metavar="TEXT", help="what to avoid (default: none, or the preset's)")
    g.add_argument("--tag", action="append", type=parse_tag, default=[], metavar="FIELD=VALUE",
                   help="a production tag, e.g. camera.movement=whip_pan; repeat for several (multi-select fields "
                        "take several values). Fields: python -m engine tags; a field's values: python -m engine "
                        "tags FIELD")
    g.add_argument("--preset", metavar="NAME", help="start from a preset (its id or name; python -m engine presets list); "
                                    "flags override it")
    g.add_argument("--seed", type=int, metavar="N", help=f"0 to {MAX_SEED} (default: a random seed, recorded in the history)")
    g.add_argument("--width", type=int, metavar="PX", help=f"pixels, 16 to the model's limit ({widest} at most; default the "
                                             f"model's: {_model_defaults('width')})")
    g.add_argument("--height", type=int, metavar="PX", help=f"pixels (default the model's: {_model_defaults('height')})")
    g.add_argument("--frames", dest="num_frames", type=int, metavar="N", help=f"frames in the clip, 1 to the model's limit "
                   f"({most_frames} at most; default the model's: {_model_defaults('num_frames')})")
    g.add_argument("--fps", type=int, metavar="N", help=f"frames per second of the mp4, 1 to 60 (default the model's: "
                                           f"{_model_defaults('fps')})")
    g.add_argument("--steps", type=int, metavar="N", help=f"denoising steps, 1 to 200 (default the model's: "
                                             f"{_model_defaults('steps')})")
    g.add_argument("--guidance", type=float, metavar="SCALE", help=f"classifier-free guidance scale, 0 to 30 (default the model's: "
                                                  f"{_model_defaults('guidance')})")
    g.add_argument("--quantization", choices=QUANTIZATION_MODES, help="weight quantization (default none)")
    g.add_argument("--offload", choices=OFFLOAD_MODES, help="CPU offload (default auto: chosen from free VRAM)")
    g.add_argument("--vae-tiling", dest="vae_tiling", action=argparse.BooleanOptionalAction, default=None,
                   help="decode the video in tiles to save memory (default: on where memory is short)")
    g.add_argument("--adapter", action="append", type=_adapter, default=[], metavar="PATH[:STRENGTH]",
                   help="a LoRA or HydraLoRA file or folder, strength -2 to 2 (default 1); repeat for several")
    g.add_argument("--transformer", dest="transformer_file", metavar="FILE",
                   help="the transformer from one file: a community GGUF (Q8_0 … Q4_K) or a single .safetensors; "
                        "a path, or a file name in <data dir>/models/gguf/ (the rest comes from --model)")
    g.add_argument("--tag-encoder", dest="tag_encoder", metavar="FOLDER",
                   help="a trained PKS tag encoder: tags also go through cross-attention and AdaLN (default none)")
    g.add_argument("--tag-guidance", dest="tag_guidance", type=float, metavar="SCALE",
                   help="separate guidance scale on the tags, 0 to 30 (needs --tag-encoder; default: plain "
                        "guidance over text and tags)")
    g.add_argument("--tags-in-prompt", dest="tags_in_prompt", action=argparse.BooleanOptionalAction, default=None,
                   help="also write the tags into the text prompt (default on)")
    g.add_argument("--anyway", dest="allow_soft_contradictions", action="store_true", default=None, help="generate "
                   "even when two tags are an unusual pair (a soft contradiction)")
    g.add_argument("--speed", choices=SPEED_PROFILES, help="speed profile (docs/speed.md; default quality)")
    g.add_argument("--cache", type=_cache, metavar="KIND[:NUMBER]",
                   help=f"step cache instead of the profile's, one of {', '.join(CACHE_KINDS)}; first-block and "
                        "mag take a threshold (0-1], the others an interval in steps (default: the profile's)")
    g.add_argument("--compile", dest="compile_blocks", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the repeated transformer blocks (slow first job; default: the profile's)")
    g.add_argument("--attention", choices=ATTENTION_BACKENDS, help="diffusers attention backend (default auto)")
    g.add_argument("--parallel", choices=PARALLEL_MODES, help="one clip over several GPUs (under torchrun; "
                                                              "default none)")
    g.add_argument("--from", dest="from_file", type=Path, metavar="MP4", help="reproduce the clip whose settings this mp4 holds")
    g.add_argument("--from-history", type=int, metavar="ID", help="reproduce a history entry")
    g.add_argument("--allow-local-models", action="store_true", help="let --from name weights outside the data dir")
    g.add_argument("--out", type=Path, metavar="MP4", help="also copy the mp4 here (missing folders are created)")
    g.add_argument("--webp", action="store_true", help="also write an animated WebP")
    g.add_argument("--gif", action="store_true", help="also write an animated GIF")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.add_argument("--best-of", type=int, metavar="N", help="generate N seeds and rank them (needs --reward-model)")
    g.add_argument("--reward-model", type=Path, metavar="DIR", help="reward checkpoint folder that ranks --best-of")
