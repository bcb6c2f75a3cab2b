"""`eval run` with the tiny preview model: history rows tagged with the run, resume after an
interruption without regenerating, shards and merge, the report and the comparison."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.settings import Settings
from engine.eval.runner import EvalRunner, batch_label
from engine.eval.state import RunFolder, item_key
from engine.eval.suite import load_suite
from engine.runner import JobRunner
from engine.studio import Studio

SUITE = """\
name: tiny
seeds: [1, 2]
generation: {width: 64, height: 64, num_frames: 9, steps: 1}
prompts:
  - {id: pan, narrative: "a girl crosses a rooftop", tags: {camera.movement: pan, style.timing: on_twos}}
  - {id: still, narrative: "an old man waits", tags: {camera.movement: static, motion.intensity: still}}
systems:
  - {id: tags, model: preview}
  - {id: blind, model: preview, use_tags: false}
"""


class _Stop(Exception):
    pass


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _batch_rows(studio: Studio, run_id: str) -> list:
    return list(studio.history.list(batch=batch_label(run_id), limit=100).items)


def test_an_interrupted_run_resumes_without_regenerating(studio_settings: Settings, tmp_path: Path,
                                                         one_torch_thread: None) -> None:
    suite = load_suite(_suite(tmp_path))
    folder = RunFolder(studio_settings.data_dir / "eval" / "r1")
    studio = Studio(studio_settings)
    try:
        done: list[str] = []

        def stop_after_three(key: str, item: dict) -> None:
            done.append(key)
            if len(done) == 3:
                raise _Stop  # as a Ctrl-C would, between two clips

        with pytest.raises(_Stop):
            EvalRunner(JobRunner(studio), suite, folder, stream=io.StringIO()).run(on_item=stop_after_three)
        first_ids = {r.id for r in _batch_rows(studio, "r1")}
        assert len(first_ids) == 3
        # A kill between a clip's save and its state write: the clip is in the history, not in the state.
        state = json.loads(folder.state_path((1, 1)).read_text())
        lost = item_key("tags", "still", 1)
        del state["items"][lost]
        folder.state_path((1, 1)).write_text(json.dumps(state))

        out = io.StringIO()
        summary = EvalRunner(JobRunner(studio), suite, folder, stream=out).run()
        assert (summary.total, summary.generated, summary.reused, summary.failed) == (8, 5, 3, 0)
        rows = _batch_rows(studio, "r1")
        assert len(rows) == 8 and first_ids <= {r.id for r in rows}  # nothing made twice
        assert all(r.source == "eval" and r.status == "done" for r in rows)
        assert "ETA" in out.getvalue() and "[8/8]" in out.getvalue()
        blind = [r for r in rows if not r.request.tags]
        assert len(blind) == 4  # the system that never sees the tags
        items = folder.all_items()
        assert len(items) == 8 and all(it["status"] == "done" for it in items.values())
        assert items[item_key("tags", "pan", 2)]["scores"]["tags"] == {"camera.movement": "pan",
                                                                        "style.timing": "on_twos"}
        again = EvalRunner(JobRunner(studio), suite, folder, stream=io.StringIO()).run()
        assert (again.generated, again.reused) == (0, 8)
    finally:
        studio.close()


def test_shards_run_apart_and_merge(studio_settings: Settings, tmp_path: Path, one_torch_thread: None,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = SUITE.replace("seeds: [1, 2]", "seeds: [3]").replace("  - {id: blind, model: preview, use_tags: false}\n", "")
    path = _suite(tmp_path, text)
    args = ["--data-dir", str(studio_settings.data_dir), "--device", "cpu", "eval", "run", str(path), "--run", "sh",
            "--no-report"]
    assert main([*args, "--shard", "1/2"]) == 0
    assert main([*args, "--shard", "2/2"]) == 0
    folder = RunFolder(studio_settings.data_dir / "eval" / "sh")
    assert [p.name for p in folder.state_files()] == ["state-1-of-2.json", "state-2-of-2.json"]
    assert len(folder.read_state(folder.state_path((1, 2)))) == 1
    capsys.readouterr()
    assert main(["--data-dir", str(studio_settings.data_dir), "eval", "merge", "sh"]) == 0
    merged = json.loads((folder.root / "results.json").read_text())["items"]
    assert sorted(merged) == [item_key("tags", "pan", 3), item_key("tags", "still", 3)]
    capsys.readouterr()
    assert main(["--data-dir", str(studio_settings.data_dir), "eval", "report", "sh", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["systems"]["tags"]["clips"] == 2
    assert {p.name for p in folder.root.glob("report.*")} == {"report.md", "report.json", "report.html"}


@pytest.mark.parametrize("change, expect", [
    (("camera.movement: pan", "camera.movement: wobble"), "suite.yaml:5: prompts[0].tags.camera.movement"),
    (("model: preview}\n  - {id: blind", "model: nope}\n  - {id: blind"), "suite.yaml:8: systems[0].model"),
    (("seeds: [1, 2]", "seeds: []"), "suite.yaml:2: seeds: is empty"),
    (("{id: still,", "{id: pan,"), "suite.yaml:6: prompts[1].id: prompt id 'pan' is used twice"),
    (("steps: 1}", "steps: 1, colour: red}"), "suite.yaml:3: generation.colour"),
])
def test_bad_suites_exit_2_in_one_line_and_generate_nothing(settings: Settings, tmp_path: Path, change, expect,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _suite(tmp_path, SUITE.replace(*change))
    code = main(["--data-dir", str(settings.data_dir), "eval", "run", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(tmp_path / expect) in err[0], err
    assert not (settings.data_dir / "eval").exists() and not settings.database.exists()


def test_a_suite_whose_system_cannot_run_stops_before_the_first_clip(studio_settings: Settings, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    text = SUITE.replace("use_tags: false}", "tag_encoder: /no/such/encoder}")
    code = main(["--data-dir", str(studio_settings.data_dir), "--device", "cpu", "eval", "run", str(_suite(tmp_path, text))])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "suite.yaml:9: systems[1].tag_encoder" in err, err
    studio = Studio(studio_settings)
    try:
        assert studio.history.list(limit=10).total == 0
    finally:
        studio.close()


def test_speed_profiles_are_systems_of_their_own(studio_settings: Settings, tmp_path: Path,
                                                 one_torch_thread: None) -> None:
    """A suite can compare speed profiles: each system's clips carry its profile, and a `fast` clip
    is never taken for the `quality` one that shares its prompt and seed."""
    text = """\
name: speed
seeds: [3]
generation: {width: 64, height: 64, num_frames: 9, steps: 4}
prompts:
  - {id: pan, narrative: "a girl crosses a rooftop", tags: {camera.movement: pan}}
systems:
  - {id: quality, model: preview}
  - {id: fast, model: preview, speed: fast}
  - {id: taylor, model: preview, cache: taylorseer, cache_threshold: 2}
"""
    suite = load_suite(_suite(tmp_path, text))
    folder = RunFolder(studio_settings.data_dir / "eval" / "speed")
    studio = Studio(studio_settings)
    try:
        summary = EvalRunner(JobRunner(studio), suite, folder, stream=io.StringIO()).run()
        rows = {r.id: r for r in _batch_rows(studio, folder.run_id)}
    finally:
        studio.close()
    assert (summary.generated, summary.reused, summary.failed) == (3, 0, 0)
    items = folder.all_items()
    speeds = {items[item_key(s, "pan", 3)]["history_id"]: s for s in ("quality", "fast", "taylor")}
    assert len(speeds) == 3  # three clips, none reused for another system
    got = {speeds[i]: (rows[i].request.speed, rows[i].request.cache, rows[i].request.cache_threshold) for i in speeds}
    # the history keeps the prepared request: the profile resolved into its cache (fast: TaylorSeer every 3)
    assert got == {"quality": ("quality", "none", None), "fast": ("fast", "taylorseer", 3),
                   "taylor": ("quality", "taylorseer", 2)}


def test_a_bad_speed_in_a_system_names_the_line(tmp_path: Path) -> None:
    from engine.core.errors import InvalidRequest

    text = SUITE.replace("{id: blind, model: preview, use_tags: false}", "{id: blind, model: preview, speed: warp}")
    with pytest.raises(InvalidRequest) as err:
        load_suite(_suite(tmp_path, text))
    assert "speed" in str(err.value) and "warp" in str(err.value) and "suite.yaml:" in str(err.value)
