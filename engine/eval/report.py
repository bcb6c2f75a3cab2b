"""Per-system tables of an eval run: metric means with bootstrap 95 % CIs, adherence per PKS axis,
confusion matrices for camera and timing, and the dilution table (adherence by narrative length).

Axes: Camera is `camera.movement` adherence, Style is `style.timing` adherence, Motion is
`motion.intensity` (exact bin, and Spearman's rho of tag rank vs motion per drawing over the
system's clips). VFX has no pixel metric: the report says so instead of leaving it out.
Learned metrics (engine/eval/learned.py) are averaged the same way as ``learned.<metric>.<dim>``.
Written as Markdown, JSON, a self-contained HTML page (tables and CSS bars, no scripts) and PNG
plots under ``plots/`` (engine/eval/plots.py), which the Markdown and HTML link.
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.toolkit.files import write_json, write_text
from .metrics import camera as cam
from .metrics.motion import intensity_rank
from .state import RunFolder
from .stats import bootstrap_ci, spearman

# metric -> (label, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "camera_adherence": ("camera adherence", True), "timing_adherence": ("timing adherence", True),
    "intensity_adherence": ("intensity adherence", True), "dynamic_degree": ("dynamic degree", True),
    "consistency": ("consistency", True), "flicker": ("flicker (grey levels)", False),
    "motion_per_drawing": ("motion per drawing (% diag)", True),
}
DILUTION_BINS = ((0, 25, "short (< 25 words)"), (25, 150, "medium (25-149 words)"), (150, 10**9, "long (150+ words)"))
FORMATS = ("md", "json", "html", "png")
LEARNED_PREFIX = "learned."


def item_values(item: Mapping[str, Any]) -> dict[str, float]:
    """The per-clip numbers a report averages (adherence as 0/1; missing tags are left out)."""
    s = item.get("scores") or {}
    adherence = s.get("adherence") or {}
    out: dict[str, float] = {}
    for axis in ("camera", "timing", "intensity"):
        if adherence.get(axis) is not None:
            out[f"{axis}_adherence"] = float(bool(adherence[axis]))
    for key in ("consistency", "flicker", "motion_per_drawing"):
        if isinstance(s.get(key), (int, float)):
            out[key] = float(s[key])
    if isinstance(s.get("dynamic_degree"), bool):
        out["dynamic_degree"] = float(s["dynamic_degree"])
    for metric, dims in (s.get("learned") or {}).items():
        for dim, value in (dims or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{LEARNED_PREFIX}{metric}.{dim}"] = float(value)
    return out


def metric_label(name: str) -> str:
    return METRICS[name][0] if name in METRICS else name


def higher_is_better(name: str) -> bool:
    from .learned import LOWER_IS_BETTER

    if name in METRICS:
        return METRICS[name][1]
    return name.rsplit(".", 1)[-1] not in LOWER_IS_BETTER


def metric_names(found: Iterable[str]) -> list[str]:
    """The pixel metrics in their fixed order, then the learned ones found, sorted."""
    return [*METRICS, *sorted({n for n in found if n.startswith(LEARNED_PREFIX)})]


def _mean_ci(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "ci": [None, None]}
    low, high = bootstrap_ci(values)
    return {"n": len(values), "mean": round(sum(values) / len(values), 6), "ci": [round(low, 6), round(high, 6)]}


def _confusion(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for truth, pred in pairs:
        table[truth][pred] += 1
    return {t: dict(row) for t, row in sorted(table.items())}


def system_report(items: list[Mapping[str, Any]], prompts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    done = [it for it in items if it.get("status") == "done"]
    values = [item_values(it) for it in done]
    metrics = {name: _mean_ci([v[name] for v in values if name in v])
               for name in metric_names(k for v in values for k in v)}
    ranks, speeds = [], []
    cam_pairs, timing_pairs = [], []
    by_bin: dict[str, list[float]] = defaultdict(list)
    for it, v in zip(done, values):
        prompt = prompts.get(it["prompt"], {})
        tags = prompt.get("tags") or {}
        scores = it.get("scores") or {}
        rank = intensity_rank(tags.get("motion.intensity"))
        if rank is not None and "motion_per_drawing" in v:
            ranks.append(float(rank))
            speeds.append(v["motion_per_drawing"])
        if tags.get("camera.movement") in cam.EXPECTED:
            cam_pairs.append((cam.expected_class(tags["camera.movement"]), str(scores.get("camera.class"))))
        if tags.get("style.timing"):
            timing_pairs.append((tags["style.timing"], str(scores.get("style.timing"))))
        words = len(str(prompt.get("narrative", "")).split())
        adh = [v[k] for k in ("camera_adherence", "timing_adherence") if k in v]
        if adh:
            label = next(lbl for low, high, lbl in DILUTION_BINS if low <= words < high)
            by_bin[label].append(sum(adh) / len(adh))
    rho = spearman(ranks, speeds)
    rho_ci = _rank_ci(ranks, speeds)
    axes = {"camera": metrics["camera_adherence"], "style (timing)": metrics["timing_adherence"],
            "motion (intensity)": metrics["intensity_adherence"],
            "vfx": {"n": 0, "mean": None, "ci": [None, None], "note": "no pixel metric; needs model weights" + (
                "; see learned.clip.vfx" if "learned.clip.vfx" in metrics else " (--learned clip)")}}
    return {
        "clips": len(done), "failed": len(items) - len(done), "metrics": metrics, "axes": axes,
        "intensity_spearman": {"n": len(ranks), "rho": None if math.isnan(rho) else round(rho, 4),
                               "ci": rho_ci},
        "confusion": {"camera": _confusion(cam_pairs), "timing": _confusion(timing_pairs)},
        "dilution": {lbl: _mean_ci(by_bin[lbl]) for _, _, lbl in DILUTION_BINS if by_bin.get(lbl)},
    }


def _rank_ci(ranks: list[float], speeds: list[float]) -> list[float | None]:
    import numpy as np

    if len(ranks) < 4:
        return [None, None]
    rng = np.random.default_rng(7)
    x, y = np.asarray(ranks), np.asarray(speeds)
    draws = []
    for _ in range(500):
        idx = rng.integers(0, len(x), len(x))
        r = spearman(x[idx].tolist(), y[idx].tolist())
        if not math.isnan(r):
            draws.append(r)
    if not draws:
        return [None, None]
    low, high = np.percentile(draws, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def build_report(folder: RunFolder) -> dict[str, Any]:
    meta = folder.meta()
    suite = meta.get("suite") or {}
    prompts = {p["id"]: p for p in suite.get("prompts", [])}
    items = folder.all_items()
    by_system: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for item in items.values():
        by_system[item["system"]].append(item)
    order = [s["id"] for s in suite.get("systems", [])]
    expected = {s: sum(len(p.get("seeds", [])) for p in prompts.values()) for s in order}
    return {"run": folder.run_id, "suite": suite.get("name"), "fingerprint": meta.get("fingerprint"),
            "dilution_bins": [lbl for _, _, lbl in DILUTION_BINS],
            "systems": {s: {**system_report(by_system.get(s, []), prompts), "expected": expected[s],
                            "config": next(x for x in suite["systems"] if x["id"] == s)} for s in order}}


def _fmt(m: Mapping[str, Any]) -> str:
    if m.get("mean") is None:
        return m.get("note", "n/a")
    low, high = m["ci"]
    return f"{m['mean']:.3f} [{low:.3f}, {high:.3f}]"


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# Eval run `{report['run']}` (suite {report['suite']})", ""]
    systems = report["systems"]
    lines += ["Means with bootstrap 95 % confidence intervals.", "",
              "| metric | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    lines.append("| clips (failed) | " + " | ".join(f"{r['clips']}/{r['expected']} ({r['failed']})"
                                                    for r in systems.values()) + " |")
    for name in metric_names(k for r in systems.values() for k in r["metrics"]):
        arrow = "↑" if higher_is_better(name) else "↓"
        lines.append(f"| {metric_label(name)} {arrow} | " + " | ".join(_fmt(r["metrics"].get(name, {}))
                                                                     for r in systems.values()) + " |")
    lines.append("| intensity Spearman ρ | " + " | ".join(
        f"{r['intensity_spearman']['rho']} {r['intensity_spearman']['ci']}" for r in systems.values()) + " |")
    lines += ["", "## Adherence per PKS axis", "", "| axis | " + " | ".join(systems) + " |",
              "|---|" + "---|" * len(systems)]
    for axis in ("camera", "style (timing)", "motion (intensity)", "vfx"):
        lines.append(f"| {axis} | " + " | ".join(_fmt(r["axes"][axis]) for r in systems.values()) + " |")
    lines += ["", "## Dilution: camera + timing adherence by narrative length", "",
              "| narrative | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for _, _, lbl in DILUTION_BINS:
        lines.append(f"| {lbl} | " + " | ".join(_fmt(r["dilution"].get(lbl, {})) for r in systems.values()) + " |")
    for sid, r in systems.items():
        for kind in ("camera", "timing"):
            table = r["confusion"][kind]
            if not table:
                continue
            cols = sorted({c for row in table.values() for c in row})
            lines += ["", f"## {sid}: {kind} confusion (rows: tagged, columns: measured)", "",
                      "| tagged | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
            lines += [f"| {t} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |" for t, row in table.items()]
    plots = report.get("plots")
    if plots:
        lines += ["", "## Plots", ""]
        for name, path in plots["files"].items():  # a paragraph each, so they stack rather than sit in a row
            lines += [f"![{name}]({path})", ""]
        lines += [f"- {name}: not drawn, {why}" for name, why in plots["not_drawn"].items()]
    return "\n".join(lines) + "\n"


def render_html(report: Mapping[str, Any]) -> str:
    systems = report["systems"]
    rows = []
    for name, (label, _better) in METRICS.items():
        cells = []
        for r in systems.values():
            m = r["metrics"][name]
            width = 0 if m["mean"] is None else max(0.0, min(1.0, m["mean"] if name.endswith(("adherence", "degree",
                                                                                               "consistency")) else 0))
            cells.append(f"<td>{html.escape(_fmt(m))}<div class='bar' style='width:{width * 100:.0f}%'></div></td>")
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(s)}</th>" for s in systems)
    body = markdown_tables_as_pre(render_markdown({k: v for k, v in report.items() if k != "plots"}))
    plots = report.get("plots") or {"files": {}, "not_drawn": {}}
    body += "".join(f"<figure><img src='{html.escape(path)}' alt='{html.escape(name)}' style='max-width:100%'>"
                    f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, path in plots["files"].items())
    body += "".join(f"<p>{html.escape(name)}: not drawn, {html.escape(why)}</p>"
                    for name, why in plots["not_drawn"].items())
    return ("<!doctype html><meta charset='utf-8'><title>Eval " + html.escape(report["run"]) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
            "text-align:left}.bar{height:6px;background:#5b6bd6}</style>"
            f"<h1>Eval run {html.escape(report['run'])}</h1><table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
            f"{body}")


def markdown_tables_as_pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def write_report(folder: RunFolder, out: Path | None = None, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write report.<fmt> for each format (and plots/*.png for "png", linked from the others)."""
    report = build_report(folder)
    out = out or folder.root
    formats = list(formats)
    written: list[Path] = []
    pictures: list[Path] = []
    if "png" in formats:  # first: the Markdown and HTML link what was drawn and say what was not
        from .plots import write_plots

        report["plots"] = write_plots(report, out)
        pictures = [out / p for p in report["plots"]["files"].values()]
    for fmt in formats:
        if fmt == "png":
            continue
        path = out / f"report.{fmt}"
        if fmt == "json":
            write_json(path, report, indent=1)
        elif fmt == "md":
            write_text(path, render_markdown(report))
        else:
            write_text(path, render_html(report))
        written.append(path)
    return written + pictures


__all__ = ["FORMATS", "LEARNED_PREFIX", "METRICS", "build_report", "higher_is_better", "item_values", "metric_label",
           "metric_names", "render_html", "render_markdown", "system_report", "write_report"]
