"""PNG plots of an eval report (the dict `report.build_report` makes) and of a comparison.

    plots/axes.png              adherence per PKS axis: a bar per system, 95 % CI error bars
    plots/confusion-camera.png  per system: tagged camera class (rows) vs measured, counts written in
    plots/confusion-timing.png  the same for style.timing
    plots/dilution.png          camera + timing adherence by narrative-length bin, a line per system

A plot with nothing to show is not drawn; `write_plots` says why under ``not_drawn`` (a suite whose
narratives are all one length has no dilution curve), and the report prints that line.

matplotlib is imported here only, and only through its object API with the Agg canvas: no
pyplot, no global backend switch, nothing shown on a screen, safe in threads and servers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..core.errors import EngineError
from ..core.toolkit.files import atomic_path

AXES = ("camera", "style (timing)", "motion (intensity)", "vfx")
PLOTS_DIR = "plots"
DPI = 110


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise EngineError("matplotlib is not installed, so the report's PNG plots cannot be drawn: "
                          "`pip install -r requirements.txt` (or `pip install matplotlib`)") from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".part.png", mode=0o644) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path


def _yerr(entries: list[Mapping[str, Any]]) -> list[list[float]]:
    """Asymmetric error bars (mean - low, high - mean); 0 where there is no value."""
    low, high = [], []
    for m in entries:
        if m.get("mean") is None or m.get("ci", [None])[0] is None:
            low.append(0.0)
            high.append(0.0)
        else:
            low.append(max(0.0, m["mean"] - m["ci"][0]))
            high.append(max(0.0, m["ci"][1] - m["mean"]))
    return [low, high]


def plot_axes(report: Mapping[str, Any], path: Path) -> Path:
    systems = report["systems"]
    fig = _figure(1.6 + 1.5 * len(AXES) * max(1, len(systems)) ** 0.5, 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(systems))
    for k, (sid, r) in enumerate(systems.items()):
        entries = [r["axes"][a] for a in AXES]
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(AXES))]
        means = [m["mean"] if m.get("mean") is not None else 0.0 for m in entries]
        ax.bar(xs, means, width * 0.92, yerr=_yerr(entries), capsize=3, label=sid)
        for x, m in zip(xs, entries):
            text = "n/a" if m.get("mean") is None else f"{m['mean']:.2f}\nn={m['n']}"
            ax.text(x, (m.get("ci") or [0, 0])[1] or 0.02, text, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(AXES)), [a if a != "vfx" else "vfx\n(no pixel metric)" for a in AXES])
    ax.set_ylim(0, 1.18)
    ax.set_ylabel("adherence (share of clips)")
    ax.set_title(f"Adherence per PKS axis, 95 % bootstrap CI ({report['run']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def plot_confusion(report: Mapping[str, Any], kind: str, path: Path) -> Path | None:
    tables = {sid: r["confusion"][kind] for sid, r in report["systems"].items() if r["confusion"].get(kind)}
    if not tables:
        return None
    rows = sorted({t for table in tables.values() for t in table})
    cols = sorted({c for table in tables.values() for row in table.values() for c in row} | set(rows))
    side = 0.45 * len(cols) + 1.5
    fig = _figure(side * len(tables) + 0.5, 0.45 * len(rows) + 1.9)
    for k, (sid, table) in enumerate(tables.items()):
        ax = fig.add_subplot(1, len(tables), k + 1)
        grid = [[table.get(t, {}).get(c, 0) for c in cols] for t in rows]
        top = max(1, max(max(line) for line in grid))
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=top, aspect="auto")
        for i, line in enumerate(grid):
            for j, count in enumerate(line):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                            color="white" if count > top / 2 else "black")
        ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows if k == 0 else [""] * len(rows), fontsize=8)
        ax.set_xlabel("measured")
        if k == 0:
            ax.set_ylabel("tagged")
        ax.set_title(sid, fontsize=9)
    fig.suptitle(f"{kind} confusion (counts of clips)", fontsize=10)
    return _save(fig, path)


def dilution_bins(report: Mapping[str, Any]) -> list[str]:
    """The narrative-length bins (in the report's order) that hold clips of any system."""
    found = {lbl for r in report["systems"].values() for lbl in r["dilution"]}
    return [lbl for lbl in report["dilution_bins"] if lbl in found]


def plot_dilution(report: Mapping[str, Any], path: Path) -> Path | None:
    bins = dilution_bins(report)
    if len(bins) < 2:
        return None
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    for k, (sid, r) in enumerate(report["systems"].items()):
        xs = [i + (k - (len(report["systems"]) - 1) / 2) * 0.04 for i, lbl in enumerate(bins) if lbl in r["dilution"]]
        entries = [r["dilution"][lbl] for lbl in bins if lbl in r["dilution"]]
        if not entries:
            continue
        ax.errorbar(xs, [m["mean"] for m in entries], yerr=_yerr(entries), marker="o", capsize=3, label=sid)
    ax.set_xticks(range(len(bins)), bins, fontsize=8)
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("narrative length")
    ax.set_ylabel("camera + timing adherence")
    ax.set_title("Dilution: adherence vs narrative length, 95 % CI", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(report: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Draw every plot of a report into out/plots/; paths are relative to `out` (as the report links them)."""
    folder = out / PLOTS_DIR
    files: dict[str, str] = {}
    not_drawn: dict[str, str] = {}
    plot_axes(report, folder / "axes.png")
    files["axes"] = f"{PLOTS_DIR}/axes.png"
    for kind, field in (("camera", "camera.movement"), ("timing", "style.timing")):
        name = f"confusion-{kind}"
        if plot_confusion(report, kind, folder / f"{name}.png") is None:
            not_drawn[name] = f"no finished clip has a {field} tag the {kind} metric checks"
        else:
            files[name] = f"{PLOTS_DIR}/{name}.png"
    if plot_dilution(report, folder / "dilution.png") is None:
        bins = dilution_bins(report)
        not_drawn["dilution"] = ((f"every scored narrative falls in one length bin ({bins[0]})" if bins else
                                  "no clip has a camera or timing tag to measure adherence on")
                                 + "; a curve needs narratives of two lengths or more (the built-in suite has "
                                   "long-narrative variants)")
    else:
        files["dilution"] = f"{PLOTS_DIR}/dilution.png"
    for name in not_drawn:  # a plot left from an earlier report of this run would contradict the note
        (folder / f"{name}.png").unlink(missing_ok=True)
    return {"files": files, "not_drawn": not_drawn}


def plot_comparison(result: Mapping[str, Any], path: Path) -> Path:
    """B - A per metric with its 95 % CI (a forest plot); green better, red worse, grey not significant."""
    metrics = list(result["metrics"].values())
    fig = _figure(7.0, 0.38 * max(1, len(metrics)) + 1.4)
    ax = fig.add_subplot()
    colours = {"B better": "tab:green", "B worse": "tab:red"}
    for i, m in enumerate(metrics):
        low, high = m["ci"]
        colour = colours.get(m["verdict"], "tab:grey")
        ax.errorbar([m["diff"]], [i], xerr=[[max(0.0, m["diff"] - low)], [max(0.0, high - m["diff"])]], fmt="o",
                    color=colour, capsize=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(metrics)), [f"{m['label']} (p={m['p_value']:.3f})" for m in metrics], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("B - A (paired), 95 % bootstrap CI")
    ax.set_title(f"{result['b']} (B) vs {result['a']} (A), {result['pairs']} pairs", fontsize=10)
    return _save(fig, path)


__all__ = ["AXES", "PLOTS_DIR", "dilution_bins", "plot_axes", "plot_comparison", "plot_confusion", "plot_dilution",
           "write_plots"]
