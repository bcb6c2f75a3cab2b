"""Stage 8, manifest and report: what the training code reads and what a person checks.

``manifest.jsonl`` (one clip per line) and ``manifest.parquet`` hold the same rows, sorted by
source then start time; the format is documented in docs/curation.md. ``report.json`` /
``report.md`` count each stage, list unreadable files, failures and rejection reasons, and
``hist_*.png`` show the score distributions with the thresholds drawn in.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.toolkit.files import atomic_path, write_text
from .state import write_json_atomic

MANIFEST_VERSION = 1
ROW_FIELDS = ("clip", "clip_id", "source", "start_s", "end_s", "fps", "num_frames", "width", "height", "timing",
              "scores", "selected", "reason", "tags", "caption", "stats")


def write_jsonl(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    text = "".join(json.dumps({k: row[k] for k in ROW_FIELDS}, ensure_ascii=False, allow_nan=False) + "\n"
                   for row in rows)
    write_text(path, text)
    return path


def parquet_schema() -> Any:
    import pyarrow as pa

    scores = pa.struct([("motion", pa.float64()), ("optical", pa.float64()), ("aesthetic", pa.float64()),
                        ("combined", pa.float64())])
    stats = pa.struct([("distinct_drawings", pa.int32()), ("hold_ratio", pa.float64()),
                       ("motion_per_s", pa.float64()), ("border_vertical", pa.float64()),
                       ("border_horizontal", pa.float64()), ("copied", pa.bool_()),
                       ("caption_rejected", pa.int32())])
    return pa.schema([
        ("clip", pa.string()), ("clip_id", pa.string()), ("source", pa.string()), ("start_s", pa.float64()),
        ("end_s", pa.float64()), ("fps", pa.float64()), ("num_frames", pa.int32()), ("width", pa.int32()),
        ("height", pa.int32()), ("timing", pa.string()), ("scores", scores), ("selected", pa.bool_()),
        ("reason", pa.string()), ("tags", pa.string()), ("caption", pa.string()), ("stats", stats),
    ], metadata={"animatrix_manifest_version": str(MANIFEST_VERSION)})


def write_parquet(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Same rows as the JSONL; `tags` is a JSON text column (a field's value is an id or a list)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        for name in schema.names:
            value = row[name]
            if name == "tags":
                value = json.dumps(value, ensure_ascii=False, sort_keys=True)
            elif name == "stats":
                value = {k: value.get(k) for k in schema.field("stats").type.names}
            cols[name].append(value)
    table = pa.table(cols, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return path


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a manifest.jsonl or manifest.parquet, in the JSONL form."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        for row in rows:
            row["tags"] = json.loads(row["tags"])
        return rows
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ------------------------------------------------------------------------------ histograms
def draw_histogram(values: Sequence[float], path: Path, *, title: str, unit: str,
                   markers: Sequence[tuple[float, str]] = (), bins: int = 20) -> Path:
    """A bar chart PNG with Pillow (no matplotlib): counts per bin, range and markers labelled."""
    from PIL import Image, ImageDraw, ImageFont

    width, height, left, right, top, bottom = 720, 400, 60, 20, 40, 60
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    draw.text((left, 12), f"{title} (n={len(vals)})", fill="black", font=font)
    pw, ph = width - left - right, height - top - bottom
    draw.rectangle([left, top, left + pw, top + ph], outline="black")
    if len(vals):
        lo = float(min(vals.min(), *(m for m, _ in markers))) if markers else float(vals.min())
        hi = float(max(vals.max(), *(m for m, _ in markers))) if markers else float(vals.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
        peak = max(1, int(counts.max()))
        for i, c in enumerate(counts):
            x0 = left + pw * i / bins
            x1 = left + pw * (i + 1) / bins - 1
            y0 = top + ph - ph * c / peak
            if c:
                draw.rectangle([x0, y0, x1, top + ph], fill=(70, 110, 200))
        for m, label in markers:
            x = left + pw * (m - lo) / (hi - lo)
            draw.line([x, top, x, top + ph], fill=(210, 40, 40), width=2)
            draw.text((x + 3, top + 3), f"{label}={m:g}", fill=(210, 40, 40), font=font)
        draw.text((left, top + ph + 6), f"{lo:.3g}", fill="black", font=font)
        draw.text((left + pw - 40, top + ph + 6), f"{hi:.3g}", fill="black", font=font)
        draw.text((6, top), str(peak), fill="black", font=font)
    draw.text((left + pw // 2 - 60, height - 22), unit, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG")
    return path


# ------------------------------------------------------------------------------ report
def _summary(values: Sequence[float | None]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=np.float64)
    return {"min": round(float(arr.min()), 4), "median": round(float(np.median(arr)), 4),
            "max": round(float(arr.max()), 4), "mean": round(float(arr.mean()), 4)}


def write_report(out_dir: Path, report: dict[str, Any], rows: Sequence[dict[str, Any]], *,
                 theta: float, min_motion: float, max_motion: float) -> dict[str, Any]:
    """Add score summaries and histograms to `report`, write report.json and report.md."""
    motion = [r["scores"]["motion"] for r in rows if r["scores"]["motion"] is not None]
    aesthetic = [r["scores"]["aesthetic"] for r in rows if r["scores"]["aesthetic"] is not None]
    combined = [r["scores"]["combined"] for r in rows if r["scores"]["combined"] is not None]
    report["scores"] = {"motion": _summary(motion), "aesthetic": _summary(aesthetic), "combined": _summary(combined)}
    hists = {
        "hist_motion.png": draw_histogram(motion, out_dir / "hist_motion.png", title="Motion score",
                                          unit="% of frame diagonal per drawing",
                                          markers=[(min_motion, "min"), (max_motion, "max")] if motion else ()),
        "hist_aesthetic.png": draw_histogram(aesthetic, out_dir / "hist_aesthetic.png", title="Aesthetic score",
                                             unit="LAION scale 0-10"),
        "hist_combined.png": draw_histogram(combined, out_dir / "hist_combined.png", title="Combined score S",
                                            unit="S = a*S_optical + (1-a)*S_aesthetic",
                                            markers=[(theta, "theta")] if combined else ()),
    }
    report["histograms"] = sorted(hists)
    write_json_atomic(out_dir / "report.json", report, indent=2)
    write_text(out_dir / "report.md", _markdown(report))
    return report


def _markdown(r: dict[str, Any]) -> str:
    lines = ["# Curation report", "", "## Counts per stage", "", "| stage | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in r["counts"].items()]
    lines += ["", "## Selection reasons", "", "| reason | clips |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(r["reasons"].items())]
    if r.get("hints"):
        lines += ["", "## What was left out, and the setting that admits it", ""] + [f"- {h}" for h in r["hints"]]
    lines += ["", "## Timing", "", "| timing | clips |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(r["timing"].items())]
    lines += ["", "## Scores", "", "| score | min | median | mean | max |", "|---|---:|---:|---:|---:|"]
    for name, s in r["scores"].items():
        lines.append(f"| {name} | " + (" | ".join(str(s[k]) for k in ("min", "median", "mean", "max")) if s else "- | - | - | -") + " |")
    lines += [""] + [f"![{h}]({h})" for h in r.get("histograms", [])]
    if r.get("unreadable"):
        lines += ["", "## Unreadable files", ""] + [f"- `{u['file']}`: {u['error']}" for u in r["unreadable"]]
    if r.get("failed"):
        lines += ["", "## Failed clips", ""] + [f"- `{f['item']}` ({f['stage']}): {f['error']}" for f in r["failed"]]
    notes = r.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
