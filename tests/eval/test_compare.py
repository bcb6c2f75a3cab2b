"""Reports and comparisons on runs whose clips are synthetic (the truth is known): two systems that
follow the camera tags are reported as not different; one that ignores them is reported worse."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.core.settings import Settings
from engine.eval.compare import compare
from engine.eval.metrics.score import rgb_to_gray, score_frames
from engine.eval.report import build_report, render_html, render_markdown
from engine.eval.state import RunFolder, item_key
from engine.eval.stats import bootstrap_ci, paired_test, spearman
from engine.eval.suite import parse_suite
from engine.eval.synthetic import SyntheticSpec, render

MOVES = {"pan": "pan_left", "tilt": "tilt_down", "zoom_in": "zoom_in", "zoom_out": "zoom_out",
         "handheld_shake": "shake", "static": "static"}
RATES = {"pan_left": 1.2, "tilt_down": 1.2, "zoom_in": 2.0, "zoom_out": 2.0, "shake": 1.5, "static": 0.0}


def _clip(move: str, seed: int, tags: dict) -> dict:
    spec = SyntheticSpec(move=move, rate=RATES[move], hold=2, frames=16, width=128, height=72, seed=seed,
                         noise=2.0, subject_speed=1.0 if move == "static" else 0.0)
    return score_frames(rgb_to_gray(render(spec), 256), spec.fps, tags=tags).to_json()


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("eval")
    prompts = [{"id": f"p{i}", "narrative": "a test", "seeds": [0],
                "tags": {"camera.movement": list(MOVES)[i % len(MOVES)], "style.timing": "on_twos"}} for i in range(24)]
    systems = [{"id": s, "model": "preview"} for s in ("follows", "follows-too", "ignores")]
    suite = parse_suite({"name": "synthetic", "prompts": prompts, "systems": systems}, "synthetic.yaml")
    folder = RunFolder(data / "eval" / "syn")
    folder.start(suite)
    items = {}
    for k, p in enumerate(prompts):
        tags = p["tags"]
        for system, move, seed in (("follows", MOVES[tags["camera.movement"]], k),
                                   ("follows-too", MOVES[tags["camera.movement"]], 1000 + k),
                                   ("ignores", "static", 2000 + k)):
            items[item_key(system, p["id"], 0)] = {"system": system, "prompt": p["id"], "seed": 0, "status": "done",
                                                    "scores": _clip(move, seed, tags)}
    folder.write_state((1, 1), items)
    return data


def test_identical_systems_are_not_different_and_a_tag_ignoring_one_is_worse(synthetic_run: Path) -> None:
    same = compare(synthetic_run / "eval", "syn:follows", "syn:follows-too")
    cam_same = same["metrics"]["camera_adherence"]
    assert same["pairs"] == 24 and not cam_same["significant"] and cam_same["verdict"] == "no significant difference"
    worse = compare(synthetic_run / "eval", "syn:follows", "syn:ignores")
    cam = worse["metrics"]["camera_adherence"]
    assert cam["verdict"] == "B worse" and cam["p_value"] < 0.01 and cam["ci"][1] < 0
    report = build_report(RunFolder(synthetic_run / "eval" / "syn"))
    a, b, c = (report["systems"][s]["metrics"]["camera_adherence"] for s in ("follows", "follows-too", "ignores"))
    assert a["mean"] >= 0.95 and b["mean"] >= 0.95 and c["mean"] < 0.3
    assert a["ci"][0] <= b["ci"][1] and b["ci"][0] <= a["ci"][1]  # the CIs of the identical systems overlap
    assert c["ci"][1] < a["ci"][0]
    confusion = report["systems"]["ignores"]["confusion"]["camera"]
    assert confusion["pan"] == {"static": 4}  # rows: what the tag asked for; columns: what the clips show
    md, page = render_markdown(report), render_html(report)
    assert "| camera adherence ↑ |" in md and "vfx" in md and "<table>" in page


def test_compare_and_report_on_the_command_line(synthetic_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(synthetic_run), "eval"]
    out = tmp_path / "cmp.json"
    assert main([*base, "compare", "syn:follows", "syn:ignores", "--out", str(out)]) == 0
    assert "B worse" in capsys.readouterr().out
    assert json.loads(out.read_text())["metrics"]["camera_adherence"]["verdict"] == "B worse"
    assert main([*base, "compare", "syn", "syn:ignores"]) == 2
    assert "say which" in capsys.readouterr().err
    assert main([*base, "compare", "syn:follows", "syn:nobody"]) == 2
    assert "has no system 'nobody'" in capsys.readouterr().err
    assert main([*base, "report", "nothere"]) == 2


def test_statistics() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    low, high = bootstrap_ci([0.0, 1.0] * 50)
    assert low < 0.5 < high and high - low < 0.3
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    assert not paired_test(x, x + rng.normal(scale=0.01, size=40) * 0).significant
    assert paired_test(x, x + 0.5 + rng.normal(scale=0.1, size=40)).p_value < 0.001
    assert paired_test([1, 1, 1], [1, 1, 1]).p_value == 1.0


def test_settings_fixture_unused_guard(settings: Settings, synthetic_run: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`eval compare` names its runs inside the data dir it is given (never the default one): with an
    empty data dir the run is missing, named with that folder; with the run copied in, it compares."""
    import shutil

    argv = ["--data-dir", str(settings.data_dir), "eval", "compare", "syn:follows", "syn:ignores"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: run: no eval run at {settings.data_dir / 'eval' / 'syn'} (run `python -m engine eval run` first)\n"
    shutil.copytree(synthetic_run / "eval" / "syn", settings.data_dir / "eval" / "syn")
    assert main(argv) == 0
    assert "B worse" in capsys.readouterr().out
