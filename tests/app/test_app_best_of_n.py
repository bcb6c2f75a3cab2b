"""Best of N in the Create tab, driven through its API with gradio_client (real server, preview model).

A tiny reward model (random weights, tiny backbone) is saved into ``<models>/reward/tiny``, the
way `python -m engine reward train --out ...` leaves one. Covers: three candidates ranked and all
three in the history with their scores stored; the picker and the refusal when no reward model is
there (with how to get one); bad input refused naming the field, nothing written; Cancel stopping
a run, the cancelled candidate recorded as such.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")
torch = pytest.importorskip("torch")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from app.tabs.best_of_n import reward_listing  # noqa: E402
from engine.reward.config import RewardConfig  # noqa: E402
from engine.reward.model import RewardModel  # noqa: E402
from engine.storage.repository import RewardRepository  # noqa: E402

from support.app import make_settings, small_form, serve  # noqa: E402

TINY = RewardConfig(num_frames=8, segments=2, d_model=16, n_heads=2, motion_size=16, text_buckets=64)
DIMENSION_COLUMNS = ("Prompt", "Motion", "Style", "Quality", "Character")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, Client]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one for the server's generation, one for the rest
    settings = make_settings(tmp_path_factory.mktemp("best-of-n"), preview_folder)
    RewardModel.build(TINY, seed=3, name="tiny").save(settings.models_dir / "reward" / "tiny")
    try:
        with serve(settings) as (services, _, client):
            yield services, client
    finally:
        torch.set_num_threads(threads)


def values(services: StudioServices, **changes: Any) -> list[Any]:
    return adapters.form_to_values(replace(small_form(), **changes), services.taxonomy)


def update_of(item: Any) -> dict[str, Any]:
    assert isinstance(item, dict) and item.get("__type__") == "update", item
    return item


def test_three_candidates_are_ranked_by_reward_and_kept_with_their_scores(
        served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history = services.studio.history
    picker, note = client.predict(api_name="/best_of_n_models")  # (the button's state is not API data)
    assert [c[1] for c in update_of(picker)["choices"]] == ["tiny"] and update_of(picker)["value"] == "tiny"
    assert "1 reward model" in note and reward_listing(services)[2]["interactive"] is True
    before = history.list(limit=1).total
    seen = {r.id for r in history.list(source="best_of_n", limit=100).items}  # other tests' candidates

    video, clip_settings, noise, status, gallery, table, details = client.predict(
        3, "tiny", *values(services), api_name="/best_of_n")

    # All three are in the history, finished, one seed apart from the form's seed.
    rows = [r for r in history.list(source="best_of_n", limit=100).items if r.id not in seen]
    assert history.list(limit=1).total == before + 3 and len(rows) == 3
    assert all(r.status == "done" for r in rows) and sorted(r.seed for r in rows) == [1234, 1235, 1236]
    # The ranking: best first, sorted by the combined reward, per-dimension scores and notes shown.
    headers, data = table["headers"], table["data"]
    assert headers[:4] == ["Rank", "Entry", "Seed", "Reward"] and tuple(headers[4:9]) == DIMENSION_COLUMNS
    assert headers[-2:] == ["P(failure)", "Notes"]
    assert [row[0] for row in data] == [1, 2, 3] and {row[1] for row in data} == {r.id for r in rows}
    rewards = [row[3] for row in data]
    assert rewards == sorted(rewards, reverse=True)
    assert all(row[-1] == "—" or "collapse" in row[-1] or "intentional" in row[-1] for row in data)
    assert [item["caption"].split(" · ")[0] for item in gallery] == [f"1. #{data[0][1]}", f"2. #{data[1][1]}",
                                                                    f"3. #{data[2][1]}"]
    # The best one plays, with its settings; the status names it.
    best = history.get(data[0][1])
    assert Path(video).is_file() and Path(video).read_bytes() == history.video_path(best).read_bytes()
    assert f"| Seed | {best.seed} |" in clip_settings and f"#{best.id}" in status and "All 3" in status
    assert noise == {"__type__": "update", "visible": True}
    assert details == "" or "Reward-model warnings" in details
    # The scores are stored per clip under the reward model's key, equal to the ones shown.
    key = services.load_reward_model("tiny").key
    stored = RewardRepository(services.studio.db).for_model(key)
    assert set(stored) == {r.id for r in rows}
    for row in data:
        assert stored[row[1]].reward == pytest.approx(row[3], abs=1e-3)
        assert set(stored[row[1]].details["dimensions"]) == set(TINY.dimensions)


def test_without_a_reward_model_the_box_says_how_to_get_one(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    folder = services.reward_dir
    aside = folder.with_name("reward-aside")
    folder.rename(aside)
    try:
        before = services.studio.history.list(limit=1).total
        picker, note = client.predict(api_name="/best_of_n_models")
        assert update_of(picker)["choices"] == [] and update_of(picker)["interactive"] is False
        assert reward_listing(services)[2]["interactive"] is False  # the button is off
        assert "No reward model yet" in note and "python -m engine reward train" in note
        assert f"--out {folder}/NAME" in note
        with pytest.raises(AppError, match="reward train"):
            client.predict(3, None, *values(services), api_name="/best_of_n")
        assert services.studio.history.list(limit=1).total == before
    finally:
        aside.rename(folder)
    # A checkpoint that appears while the page is open is offered after Rescan (and accepted).
    shutil.copytree(folder / "tiny", folder / "tiny-2")
    (folder / "tiny-2" / "reward_config.json").touch()  # written just now, as `reward train` would
    try:
        picker, note = client.predict(api_name="/best_of_n_models")
        assert update_of(picker)["value"] == "tiny-2" and "2 reward models" in note  # newest first
        with pytest.raises(AppError, match="^Width:"):  # past the picker's check, stopped by the form's
            client.predict(3, "tiny-2", *values(services, width=70), api_name="/best_of_n")
    finally:
        shutil.rmtree(folder / "tiny-2")


def test_bad_input_is_refused_naming_the_field_and_writes_nothing(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history = services.studio.history
    before = history.list(limit=1).total
    cases: dict[str, tuple[Any, Any, list[Any]]] = {
        "Width": (3, "tiny", values(services, width=70)),
        "Narrative": (3, "tiny", values(services, narrative="   ")),
        "Frames": (3, "tiny", values(services, num_frames=10000)),
        "Model": (3, "tiny", values(services, model="no-such-model")),
        "N": (2.5, "tiny", values(services)),
    }
    for label, (n, reward, form) in cases.items():
        with pytest.raises(AppError) as caught:
            client.predict(n, reward, *form, api_name="/best_of_n")
        assert str(caught.value).startswith(f"{label}:"), caught.value
    with pytest.raises(AppError, match="greater than maximum value 8"):  # the slider's own bound
        client.predict(9, "tiny", *values(services), api_name="/best_of_n")
    with pytest.raises(AppError, match="not in the list of choices"):  # the picker's own check
        client.predict(3, "no-such-reward", *values(services), api_name="/best_of_n")
    assert history.list(limit=1).total == before


def test_cancel_stops_the_run_and_keeps_the_record(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history = services.studio.history
    seen = {r.id for r in history.list(source="best_of_n", limit=100).items}
    job = client.submit(3, "tiny", *values(services, steps=200, seed=77), api_name="/best_of_n")
    deadline = time.monotonic() + 90
    while not [r for r in history.list(status="running", source="best_of_n", limit=5).items if r.id not in seen]:
        assert time.monotonic() < deadline, "the first candidate did not start"
        time.sleep(0.05)
    assert "Cancelling Best of N" in client.predict(api_name="/cancel")
    video, _, _, status, gallery, table, _ = job.result(timeout=90)
    assert video is None and "cancelled at candidate 1" in status and gallery == [] and table["data"] == []
    new = [r for r in history.list(source="best_of_n", limit=100).items if r.id not in seen]
    assert [(r.status, r.seed, r.video_path) for r in new] == [("cancelled", 77, None)]

    # The queue panel lists the running candidate; removing it there stops the run the same way.
    seen |= {r.id for r in new}
    job = client.submit(3, "tiny", *values(services, steps=200, seed=88), api_name="/best_of_n")
    deadline = time.monotonic() + 90
    while not (running := [r for r in history.list(status="running", source="best_of_n", limit=5).items
                           if r.id not in seen]):
        assert time.monotonic() < deadline, "the first candidate did not start"
        time.sleep(0.05)
    client.predict(str(running[0].id), api_name="/remove_job")
    *_, status, _, _, _ = job.result(timeout=90)
    assert "cancelled at candidate 1" in status and history.get(running[0].id).status == "cancelled"


def test_a_probable_collapse_is_a_warning_and_an_intentional_deformation_is_not() -> None:
    from engine.reward.types import RewardScore, ScoredClip, SegmentScore

    from app.formatting import best_of_n_caption, best_of_n_details, best_of_n_rows

    dims = {d: 0.5 for d in TINY.dimensions}
    collapse = RewardScore(-1.2, dims, {}, p_failure=0.81, p_intentional=0.1,
                           segments=(SegmentScore(0, 0, 4, 0.1, 0.09, 0.81),),
                           warnings=("possible failure (collapse, not an intentional deformation) in frames 0-4: "
                                     "p=0.81",))
    smear = RewardScore(0.4, dims, {}, p_failure=0.05, p_intentional=0.9)
    clips = [ScoredClip(1, SimpleNamespace(id=7), Path("a.mp4"), smear, 10),  # type: ignore[arg-type]
             ScoredClip(2, SimpleNamespace(id=8), Path("b.mp4"), collapse, 11)]  # type: ignore[arg-type]
    rows = best_of_n_rows(clips)
    assert rows[0][-1].startswith("intentional deformation") and "⚠" not in rows[0][-1]
    assert rows[1][-1].startswith("⚠ possible collapse") and rows[1][-2] == 0.81
    assert "⚠" in best_of_n_caption(clips[1]) and "⚠" not in best_of_n_caption(clips[0])
    details = best_of_n_details(clips)
    assert "#8" in details and "frames 0-4" in details and "#7" not in details
