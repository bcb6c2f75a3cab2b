"""Reward scores in the studio UI, driven through the API with gradio_client (real server, no browser).

The rating template of `test_rating_support` (seven tiny clips, an admin, three raters, pairs) is
copied, every rater judges every pair the way the fake raters prefer (the better model wins), and
a tiny reward model (random weights, tiny backbone) is saved into ``<models>/reward/tiny``.
Covers: the admin leaderboard without a reward model (unchanged table), with one (every rated clip
scored and stored first, a reward column beside the Bradley-Terry score, the agreement table),
refusals (unknown checkpoint, a rater asking), and the History details table listing the stored
scores of an entry.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")
torch = pytest.importorskip("torch")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app.services.context import StudioServices  # noqa: E402
from app.tabs.rating_admin import AGREEMENT_HEADERS, BOARD_HEADERS, OVERALL_TITLE, REWARD_BOARD_HEADERS  # noqa: E402
from engine.reward.config import RewardConfig  # noqa: E402
from engine.reward.model import RewardModel  # noqa: E402
from engine.storage.repository import RewardRepository  # noqa: E402

from support.app import launch, value  # noqa: E402
from support.rating import ADMIN, PASSWORD, RATERS, Template, make_settings, prefer_better_model  # noqa: E402


TINY = RewardConfig(num_frames=8, segments=2, d_model=16, n_heads=2, motion_size=16, text_buckets=64)


@pytest.fixture(scope="module")
def served(template: Template, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[StudioServices, str, dict[str, int]]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data_dir = tmp_path_factory.mktemp("reward-views") / "data"
    shutil.copytree(template.data_dir, data_dir)
    settings = make_settings(data_dir)
    RewardModel.build(TINY, seed=3, name="tiny").save(settings.models_dir / "reward" / "tiny")
    services = StudioServices.create(settings, start_worker=False)
    service = services.rating
    for name in RATERS:
        rater = service.rater_by_name(name)
        while (pair := service.next_pair(rater)) is not None:
            service.submit(rater, pair.assignment_id, prefer_better_model(service, pair))
    app, url = launch(services)
    try:
        yield services, url, dict(template.clips)
    finally:
        app.close()
        services.close()
        torch.set_num_threads(threads)


def signed_in(url: str, name: str) -> Client:
    client = Client(url, verbose=False)
    client.predict(name, PASSWORD, api_name="/rate_sign_in")
    return client


def details_of(client: Client, entry: int) -> str:
    return str(value(client.predict(str(entry), api_name="/history_entry")[3]))


def test_leaderboard_with_a_reward_model_and_history_scores(served: tuple[StudioServices, str, dict[str, int]]
                                                            ) -> None:
    services, url, clips = served
    client = signed_in(url, ADMIN)
    repo = RewardRepository(services.studio.db)
    assert repo.model_keys() == []
    assert "Reward ·" not in details_of(client, clips["n1-animegen-t2v"])  # nothing stored yet

    # Animators only: the table as before, no agreement.
    board, agreement, note = client.predict("model", "", api_name="/rating_leaderboard")
    assert board["headers"] == BOARD_HEADERS and board["data"] and note == ""
    assert value(agreement) in ([], None) or not value(agreement).get("data")

    # With the tiny reward model: the rated clips are scored (and stored) first.
    board, agreement, note = client.predict("model", "tiny", api_name="/rating_leaderboard")
    assert board["headers"] == REWARD_BOARD_HEADERS
    rows = board["data"]
    quality = [r for r in rows if r[0] == "Visual quality"]
    assert [r[2] for r in quality] == ["animegen-t2v", "wan2.1-t2v-1.3b", "preview"]  # by human score
    assert all(r[8].startswith(("+", "-")) and int(r[9]) > 0 for r in quality)  # reward score beside it
    overall = [r for r in rows if r[0] == OVERALL_TITLE]
    assert {r[2] for r in overall} == {"animegen-t2v", "wan2.1-t2v-1.3b", "preview"}
    agreement = value(agreement)
    assert agreement["headers"] == AGREEMENT_HEADERS
    dims = {r[0]: r for r in agreement["data"]}
    assert {"Visual quality", OVERALL_TITLE} <= set(dims)
    spearman, pairwise = dims["Visual quality"][1], dims["Visual quality"][2]
    assert spearman != "—" and -1.0 <= float(spearman) <= 1.0  # three groups: a rank correlation
    assert pairwise.endswith("%") and int(dims["Visual quality"][4]) > 0
    [key] = repo.model_keys()
    assert key.startswith("tiny") and key in note
    stored = repo.for_model(key)
    assert set(clips.values()) <= set(stored) and "scored (" in note

    # A second run reuses the stored scores.
    _, _, again = client.predict("model", "tiny", api_name="/rating_leaderboard")
    assert "(0 just now" in again

    # The History details table lists the stored scores of an entry.
    text = details_of(client, clips["n1-animegen-t2v"])
    record = stored[clips["n1-animegen-t2v"]]
    assert f"| Reward · {key} |" in text and f"reward {record.reward:+.3f}" in text
    assert f"P(failure) {record.p_failure:.2f}" in text and "Motion " in text and "Quality " in text
    assert "| Setting | Value |" in text and "| Model |" in text


def test_leaderboard_refusals(served: tuple[StudioServices, str, dict[str, int]]) -> None:
    _, url, _ = served
    admin = signed_in(url, ADMIN)
    with pytest.raises(AppError, match="not a checkpoint"):
        admin.predict("model", "nope", api_name="/rating_leaderboard")
    rater = signed_in(url, RATERS[0])
    with pytest.raises(AppError, match="(?i)admin"):
        rater.predict("model", "tiny", api_name="/rating_leaderboard")


def test_picker_lists_the_reward_checkpoints(served: tuple[StudioServices, str, dict[str, int]]) -> None:
    from app.tabs.rating_admin import NO_REWARD, reward_choices

    services, _, _ = served
    choices: list[Any] = reward_choices(services)
    assert choices[0][1] == NO_REWARD and [c[1] for c in choices[1:]] == ["tiny"]
    assert Path(services.reward_dir, "tiny").is_dir()


def test_reward_catalog_file_names_are_the_engines() -> None:
    """The catalog spells the config name out so listing needs no torch; it must not drift."""
    from engine.reward import catalog, model

    assert (catalog.REWARD_CONFIG, catalog.REWARD_FORMAT) == (model.CONFIG_FILE, model.FORMAT)
