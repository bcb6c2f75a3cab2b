"""Why footage was left out, in the names of the settings that decide it.

`admission_hints` turns a run's rows and shot plans into one line per rejection reason: how many
clips (or shots) and which setting, at which value, would have let the best of them in — e.g.
"6 shots shorter than clips.min_s=3 s; the longest was 2.4 s (clips.min_s=2.4 admits it)". The
names are the config keys, the same ones `--set KEY=VALUE` takes. `explain_clip` prints one
clip's numbers against every threshold (`curate --explain CLIP_ID`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .config import CurationConfig
from .shots import ShotPlan, split_shot


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def short_shot_hint(plans: Sequence[ShotPlan], fps_of: Mapping[str, float], cfg: CurationConfig) -> str | None:
    clips = cfg.clips
    longest, count = 0.0, 0
    for plan in plans:
        fps = fps_of.get(plan.source_id) or 0.0
        if fps <= 0:
            continue
        for shot in plan.shots:
            usable = shot.end - shot.start - 2 * clips.shot_margin_frames
            if not split_shot(usable, fps, clips):
                count += 1
                longest = max(longest, max(usable, 0) / fps)
    if not count:
        return None
    admit = max(round(longest - 0.05, 1), 0.1)
    return (f"{_n(count, 'shot')} shorter than clips.min_s={clips.min_s:g} s (after clips.shot_margin_frames="
            f"{clips.shot_margin_frames} at each end); the longest was {longest:.1f} s"
            + (f" (clips.min_s={admit:g} admits it)" if admit < clips.min_s else ""))


def admission_hints(rows: Sequence[Mapping[str, Any]], cfg: CurationConfig,
                    plans: Sequence[ShotPlan] = (), fps_of: Mapping[str, float] | None = None) -> list[str]:
    """One line per reason that cost clips, naming the setting that would admit the best of them."""
    sel = cfg.selection
    hints: list[str] = []
    short = short_shot_hint(plans, fps_of or {}, cfg)
    if short:
        hints.append(short)

    def of(reason: str) -> list[Mapping[str, Any]]:
        return [r for r in rows if r.get("reason") == reason]

    low = of("low_resolution")
    if low:
        w, h = max((int(r["width"]), int(r["height"])) for r in low)
        hints.append(f"{_n(len(low), 'clip')} smaller than selection.min_width={sel.min_width} x "
                     f"selection.min_height={sel.min_height}; the largest was {w}x{h} "
                     f"(selection.min_width={min(w, sel.min_width)} selection.min_height={min(h, sel.min_height)} "
                     "admits it)")
    black = of("black_frames")
    if black:
        hints.append(f"{_n(len(black), 'clip')} black throughout (no pixel above selection.black_level="
                     f"{sel.black_level}); lower selection.black_level if the footage is only dark")
    borders = of("black_borders")
    if borders:
        least = min(max(r["stats"]["border_vertical"], r["stats"]["border_horizontal"]) for r in borders)
        hints.append(f"{_n(len(borders), 'clip')} with black borders above selection.max_border={sel.max_border:g} "
                     f"of the frame; the least was {least:.2f} (selection.max_border={least + 0.005:.2f} admits it, "
                     "or crop the footage)")
    static = of("static")
    if static:
        most = max(float(r["scores"]["motion"]) for r in static)
        hints.append(f"{_n(len(static), 'clip')} moving less than selection.min_motion={sel.min_motion:g} % of the "
                     f"diagonal per drawing; the most was {most:.3f} (selection.min_motion={most * 0.99:.3g} "
                     "admits it)")
    wild = of("excessive_motion")
    if wild:
        least_m = min(float(r["scores"]["motion"]) for r in wild)
        hints.append(f"{_n(len(wild), 'clip')} moving more than selection.max_motion={sel.max_motion:g} % per drawing "
                     f"(flashes, cuts the detector missed); the least was {least_m:.2f} "
                     f"(selection.max_motion={least_m * 1.01:.3g} admits it)")
    below = of("below_threshold")
    if below:
        scores = sorted((float(r["scores"]["combined"]) for r in below), reverse=True)
        half = scores[len(scores) // 2]
        hints.append(f"{_n(len(below), 'clip')} scored S below selection.theta={sel.theta:g}; the best was "
                     f"{scores[0]:.2f} (selection.theta={_floor(scores[0])} admits it; "
                     f"selection.theta={_floor(half)} admits half of them)")
    return hints


def _floor(value: float) -> str:
    return f"{int(value * 100) / 100:.2f}"


def explain_clip(row: Mapping[str, Any], cfg: CurationConfig) -> list[str]:
    """One clip's numbers against each threshold, first failing filter marked."""
    sel = cfg.selection
    s, st = row["scores"], row["stats"]
    border = max(st["border_vertical"], st["border_horizontal"])
    aesthetic = s.get("aesthetic")
    checks = [
        ("size", f"{row['width']}x{row['height']}", f">= {sel.min_width}x{sel.min_height} "
         "(selection.min_width, selection.min_height)", row["width"] >= sel.min_width and row["height"] >= sel.min_height),
        ("black border", f"{border:.3f}", f"<= {sel.max_border:g} (selection.max_border)", border <= sel.max_border),
        ("motion", f"{float(s['motion']):.3f} % per drawing",
         f"{sel.min_motion:g} to {sel.max_motion:g} (selection.min_motion, selection.max_motion)",
         sel.min_motion <= float(s["motion"]) <= sel.max_motion),
        ("S_optical", f"{float(s['optical']):.2f} px per drawing at 800x450", "", None),
        ("S_aesthetic", "none (aesthetic.scorer: none)" if aesthetic is None else f"{float(aesthetic):.2f}", "", None),
        ("S", f"{float(s['combined']):.2f}", f">= {sel.theta:g} (selection.theta; alpha={sel.alpha:g})",
         float(s["combined"]) >= sel.theta),
    ]
    lines = [f"clip {row['clip_id']} ({row['source']} {row['start_s']:.2f}-{row['end_s']:.2f} s, "
             f"{row['num_frames']} frames, timing {row['timing']}): {row['reason']}"]
    for name, value, rule, ok in checks:
        mark = "  " if ok is None else ("ok" if ok else "NO")
        lines.append(f"  {mark} {name:<13} {value:<36} {rule}".rstrip())
    return lines
