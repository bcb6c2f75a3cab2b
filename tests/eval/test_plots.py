"""PNG plots of a report: axes bars, camera/timing confusion, the dilution curve; a suite whose
narratives are all one length gets no dilution plot and a line in the report saying why."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.eval.plots import plot_comparison
from engine.eval.report import write_report
from engine.eval.state import RunFolder, item_key
from engine.eval.suite import parse_suite

LONG = " ".join(["the wind pulls at her coat while the city hums below"] * 16)  # 176 words
MOVES = ("pan", "tilt", "static", "zoom_in")


def _scores(rng: np.random.Generator, move: str, follows: float) -> dict:
    hit = bool(rng.random() < follows)
    timing_hit = bool(rng.random() < follows)
    return {"camera.class": move if hit else "static", "style.timing": "on_twos" if timing_hit else "on_ones",
            "adherence": {"camera": hit, "timing": timing_hit, "intensity": None},
            "consistency": float(rng.uniform(0.8, 1.0)), "flicker": float(rng.uniform(0, 3)),
            "motion_per_drawing": float(rng.uniform(0.5, 3)), "dynamic_degree": bool(rng.random() < 0.7)}


def _run(data: Path, name: str, *, long: bool) -> RunFolder:
    """A run of synthetic items (scores drawn at random around a known adherence rate): no generation."""
    prompts = [{"id": f"p{i}", "narrative": LONG if long and i % 2 else "a girl on a roof", "seeds": [0, 1],
                "tags": {"camera.movement": MOVES[i % len(MOVES)], "style.timing": "on_twos"}} for i in range(8)]
    systems = [{"id": "good", "model": "preview"}, {"id": "blind", "model": "preview", "use_tags": False}]
    suite = parse_suite({"name": name, "prompts": prompts, "systems": systems}, f"{name}.yaml")
    folder = RunFolder(data / "eval" / name)
    folder.start(suite)
    rng = np.random.default_rng(3)
    items = {}
    for p in prompts:
        for seed in (0, 1):
            for system, rate in (("good", 0.9), ("blind", 0.3)):
                items[item_key(system, p["id"], seed)] = {
                    "system": system, "prompt": p["id"], "seed": seed, "status": "done",
                    "scores": _scores(rng, p["tags"]["camera.movement"], rate)}
    folder.write_state((1, 1), items)
    return folder


def _is_drawn_png(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as img:
        img.load()  # a truncated file fails here
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1], img.size
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 8, "the picture is blank"  # bars, text and lines are there


def test_report_writes_every_plot_and_links_them(tmp_path: Path) -> None:
    folder = _run(tmp_path, "mixed", long=True)
    paths = write_report(folder)
    assert paths[0] == folder.root / "report.md"  # the CLI prints the first one
    plots = folder.root / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["axes.png", "confusion-camera.png", "confusion-timing.png",
                                                       "dilution.png"]
    for png in plots.iterdir():
        _is_drawn_png(png)
    assert {p for p in paths if p.suffix == ".png"} == set(plots.iterdir())
    md = (folder.root / "report.md").read_text()
    for name in ("axes", "confusion-camera", "confusion-timing", "dilution"):
        assert f"![{name}](plots/{name}.png)" in md
    assert "not drawn" not in md
    page = (folder.root / "report.html").read_text()
    assert "<img src='plots/axes.png'" in page and "<img src='plots/dilution.png'" in page
    data = json.loads((folder.root / "report.json").read_text())
    assert data["plots"]["files"]["dilution"] == "plots/dilution.png" and data["plots"]["not_drawn"] == {}
    assert set(data["systems"]["good"]["dilution"]) == {"short (< 25 words)", "long (150+ words)"}


def test_one_narrative_length_draws_no_dilution_curve_and_says_why(tmp_path: Path) -> None:
    folder = _run(tmp_path, "short", long=False)
    stale = folder.root / "plots" / "dilution.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an old plot")  # from an earlier report: it would contradict the note
    write_report(folder)
    assert not stale.exists()
    assert (folder.root / "plots" / "axes.png").is_file()
    md = (folder.root / "report.md").read_text()
    assert ("- dilution: not drawn, every scored narrative falls in one length bin (short (< 25 words)); a curve "
            "needs narratives of two lengths or more") in md
    assert "![dilution]" not in md and "dilution: not drawn" in (folder.root / "report.html").read_text()


def test_formats_without_png_draw_nothing(tmp_path: Path) -> None:
    folder = _run(tmp_path, "nopng", long=True)
    write_report(folder, formats=("md", "json"))
    assert not (folder.root / "plots").exists() and "## Plots" not in (folder.root / "report.md").read_text()


def test_eval_report_and_compare_write_pngs_on_the_command_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, "cli", long=True)
    base = ["--data-dir", str(tmp_path), "eval"]
    out = tmp_path / "elsewhere"
    assert main([*base, "report", "cli", "--out", str(out)]) == 0
    assert "axes.png" in capsys.readouterr().out
    _is_drawn_png(out / "plots" / "confusion-camera.png")
    png = tmp_path / "cmp.png"
    assert main([*base, "compare", "cli:good", "cli:blind", "--out", str(png)]) == 0
    assert "B worse" in capsys.readouterr().out
    _is_drawn_png(png)
    assert main([*base, "compare", "cli:good", "cli:blind", "--out", str(tmp_path / "cmp.svg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_comparison_plot_with_no_metric_still_draws(tmp_path: Path) -> None:
    result = {"a": "r:a", "b": "r:b", "pairs": 3, "metrics": {
        "flicker": {"label": "flicker", "diff": -0.5, "ci": [-0.9, -0.1], "p_value": 0.01, "verdict": "B better"}}}
    _is_drawn_png(plot_comparison(result, tmp_path / "one.png"), (200, 100))
