"""The Eval tab: a real tiny eval run (preview model, 2 systems x 2 prompts x 1 seed, through the
real runner) listed, its report, plots and clip rows, its same-prompt/same-seed pairs sent to a
real RatingService over SQLite (once: a second send makes none), the animators' judgements beside
the metrics, and the tab in the built and served studio (an admin uses it, a rater is refused)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from app.services import eval_view as view
from app.services.context import StudioServices
from app.services.identity import Identity
from app.ui import build_app
from engine.core.errors import InvalidRequest, NotFound
from engine.core.settings import Settings
from engine.eval.state import RunFolder, item_key
from engine.rating.service import RatingService
from engine.rating.types import PermissionDenied
from engine.storage.clips import HistoryService
from engine.storage.db import Database, open_database

from support.app import free_port, value
from support.eval_run import RUN, make_eval_run
from support.rating import PASSWORD, full_form

@pytest.fixture(scope="module")
def template_run(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Path:
    """A data folder holding one finished eval run, made once by the real runner."""
    return make_eval_run(tmp_path_factory.mktemp("eval-tab"), preview_folder).data_dir


@pytest.fixture
def data(template_run: Path, tmp_path: Path) -> Settings:
    """This test's own copy of the run's data folder (database, clips and eval folder together)."""
    shutil.copytree(template_run, tmp_path / "data")
    return Settings(data_dir=tmp_path / "data", default_model="preview", device="cpu", hf_cache_dir=tmp_path / "hf")


@pytest.fixture
def db(data: Settings) -> Iterator[Database]:
    database = open_database(data.database)
    yield database
    database.dispose()


def _folder(settings: Settings) -> RunFolder:
    return view.open_run(view.eval_dir(settings.data_dir), RUN)


def test_without_runs_the_tab_says_how_to_make_one(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    assert view.list_runs(root) == []  # no folder at all
    (root / "half-made").mkdir(parents=True)  # no run.json: not a run
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    assert view.list_runs(root) == []
    assert "`python -m engine eval run builtin`" in view.empty_text(root) and str(root) in view.empty_text(root)
    with pytest.raises(InvalidRequest, match="pick a run"):
        view.open_run(root, None)
    with pytest.raises(InvalidRequest, match="not a run id"):
        view.open_run(root, "../studio")
    with pytest.raises(NotFound, match="no eval run 'gone'"):
        view.open_run(root, "gone")


def test_runs_rows_report_plots_and_clips(data: Settings, db: Database) -> None:
    runs = view.list_runs(view.eval_dir(data.data_dir))
    assert [(r.run_id, r.suite, r.systems, r.done, r.total) for r in runs] == [(RUN, "tiny", ("tags", "blind"), 4, 4)]
    assert view.run_choices(runs) == [(runs[0].label, RUN)] and "4/4 clips" in runs[0].label
    folder = _folder(data)
    rows = view.clip_rows(folder)
    # The suite's order: system, then prompt, then seed; every clip done with its History entry.
    assert [(r.system, r.prompt, r.seed, r.status) for r in rows] == [
        ("tags", "pan", 1, "done"), ("tags", "still", 1, "done"), ("blind", "pan", 1, "done"),
        ("blind", "still", 1, "done")]
    assert all(r.history_id is not None for r in rows)
    table = view.table(rows)
    assert table["headers"] == view.CLIP_HEADERS and len(table["data"]) == 4
    pan = dict(zip(view.CLIP_HEADERS, table["data"][0]))
    # Adherence cells: a verdict and what was measured on the tagged axes, a dash on the others.
    assert pan["Camera"][0] in "✓✗" and pan["Timing"][0] in "✓✗" and pan["Intensity"] == "—"
    assert pan["Entry #"] == rows[0].history_id and pan["Dynamic"] in ("yes", "no")

    report = view.report_markdown(folder)
    assert report.startswith(f"# Eval run `{RUN}`") and "| metric | tags | blind |" in report
    assert view.plot_files(folder) == [] and f"eval report {RUN}" in view.plot_note(folder, [])
    (folder.root / "plots").mkdir(exist_ok=True)
    Image.new("RGB", (40, 30), "#5b6bd6").save(folder.root / "plots" / "camera_bars.png")
    (folder.root / "plots" / "notes.txt").write_text("not a picture")
    assert [p.name for p in view.plot_files(folder)] == ["camera_bars.png"]
    assert view.plot_note(folder, view.plot_files(folder)).startswith("1 plot,")

    # A row as the browser sends it names its clip; the video comes from the History.
    key = view.key_of_row(table["data"][3])
    assert key == item_key("blind", "still", 1) and view.key_of_row(["x"]) is None
    history = HistoryService(db, data.media_dir)
    clip = view.find_clip(folder, key, history)
    assert clip.video is not None and clip.video.is_file() and clip.video.is_relative_to(data.media_dir)
    assert clip.narrative == "an old man waits" and f"History #{rows[3].history_id}" in view.clip_markdown(clip)
    assert clip.preview and "Preview model" in view.clip_markdown(clip)  # noise, said as everywhere else
    with pytest.raises(NotFound, match="no clip"):
        view.find_clip(folder, item_key("blind", "still", 9), history)


def test_pairs_go_to_rating_once_and_sit_beside_the_metrics(data: Settings, db: Database) -> None:
    service = RatingService(db, data.media_dir)
    admin = service.create_first_admin("director", PASSWORD)
    rater = service.add_rater(admin, "aki", PASSWORD)
    folder = _folder(data)
    ids = {(r.system, r.prompt): r.history_id for r in view.clip_rows(folder)}

    plan = view.plan_pairs(folder, "tags", "blind")
    assert {(p.prompt, p.seed, p.a, p.b) for p in plan.pairs} == {
        ("pan", 1, ids["tags", "pan"], ids["blind", "pan"]), ("still", 1, ids["tags", "still"], ids["blind", "still"])}
    with pytest.raises(PermissionDenied):
        view.send_pairs(service, rater, plan)  # only an admin makes pairs
    assert service.list_pairs(admin) == []

    sent = view.send_pairs(service, admin, plan)
    assert len(sent.created) == 2 and sent.existing == 0 and not sent.skipped
    assert "**2 new rating pairs** (tags vs blind), 0 already there, 0 skipped." in sent.markdown(plan)
    pairs = service.list_pairs(admin)
    assert {tuple(sorted((p.generation_a_id, p.generation_b_id))) for p in pairs} == {
        tuple(sorted((p.a, p.b))) for p in plan.pairs}
    again = view.send_pairs(service, admin, view.plan_pairs(folder, "blind", "tags"))  # either order: same pairs
    assert again.created == [] and again.existing == 2 and len(service.list_pairs(admin)) == 2

    with pytest.raises(InvalidRequest, match="two different systems"):
        view.plan_pairs(folder, "tags", "tags")
    with pytest.raises(InvalidRequest, match=r"System B: pick one of the run's systems \(tags, blind\)"):
        view.plan_pairs(folder, "tags", "nope")
    # A clip that failed leaves its prompt and seed out, said in the report.
    state_path = folder.state_path((1, 1))
    state = json.loads(state_path.read_text())
    state["items"][item_key("blind", "still", 1)]["status"] = "failed"
    state_path.write_text(json.dumps(state))
    partial = view.plan_pairs(folder, "tags", "blind")
    assert [p.prompt for p in partial.pairs] == ["pan"] and partial.missing == ("still seed 1",)
    assert "- skipped still seed 1: a clip is not done" in view.send_pairs(service, admin, partial).markdown(partial)

    # The animators judge one pair; their verdicts sit beside the metrics, per system.
    served = service.next_pair(rater)
    assert served is not None
    service.submit(rater, served.assignment_id, full_form("A"))
    with pytest.raises(PermissionDenied):
        view.human_vs_automatic(service, rater, folder)
    side = view.human_vs_automatic(service, admin, folder)
    assert side["judged"] == 1 and [row[0] for row in side["data"]] == ["tags", "blind"]
    assert side["headers"][:3] == ["System", "Clips", "Camera ✓"]
    human = [row[6:] for row in side["data"]]  # after System, Clips and the four automatic columns
    assert all(cell.endswith(("(1–0–0)", "(0–0–1)")) for row in human for cell in row)
    assert {row[0][-7:] for row in human} == {"(1–0–0)", "(0–0–1)"}  # one won, the other lost


def _update(item: Any) -> dict[str, Any]:
    assert isinstance(item, dict) and item.get("__type__") == "update", item
    return item


def test_the_studio_has_an_eval_tab_for_admins_and_none_for_raters(data: Settings) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    services = StudioServices.create(data, start_worker=False, identity=Identity(mode="raters"))
    admin = services.rating.create_first_admin("director", PASSWORD)
    services.rating.add_rater(admin, "aki", PASSWORD)
    app = build_app(services)
    try:
        tabs = {getattr(b, "id", None): b for b in app.blocks.blocks.values() if type(b).__name__ == "Tab"}
        assert "eval" in tabs and tabs["eval"].label == "Eval" and app.eval is not None
        _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                               auth="raters")
        client = Client(url, auth=("director", PASSWORD), verbose=False)
        # (the layout column that the run shows up in is not API data)
        (run, status, report, plots_note, plots, clips, sys_a, sys_b, selected, video,
         info) = client.predict(None, None, None, api_name="/eval_runs")
        assert _update(run)["value"] == RUN and [c[1] for c in _update(run)["choices"]] == [RUN]
        assert "4/4 clips done" in status and selected == "" and video is None and info == ""
        assert f"# Eval run `{RUN}`" in report and "eval report" in plots_note and not value(plots)
        assert len(value(clips)["data"]) == 4
        assert (_update(sys_a)["value"], _update(sys_b)["value"]) == ("tags", "blind")

        played, text = client.predict(RUN, item_key("tags", "pan", 1), api_name="/eval_clip")
        played = played["video"] if isinstance(played, dict) else played  # (older clients: a dict)
        assert Path(played).is_file() and Path(played).suffix == ".mp4" and "History #" in text
        with pytest.raises(AppError, match="no clip"):
            client.predict(RUN, "tags|pan|99", api_name="/eval_clip")

        # Write report: the files `eval report` writes, and whatever plots it drew, shown.
        _, _, note, gallery, *_ = client.predict(RUN, "tags", "blind", api_name="/eval_write_report")
        folder = _folder(data)
        assert (folder.root / "report.md").is_file() and (folder.root / "report.html").is_file()
        gallery = value(gallery)
        assert len(gallery) == len(view.plot_files(folder))
        if gallery:
            assert note.endswith("(*Write report* redraws them).") and all(g["caption"] for g in gallery)

        # Pairs are made as the studio login (an admin here), once.
        sent = client.predict(RUN, "tags", "blind", api_name="/eval_send_pairs")
        assert "**2 new rating pairs**" in sent and len(services.rating.list_pairs(admin)) == 2
        assert "**0 new rating pairs** (tags vs blind), 2 already there" in client.predict(
            RUN, "tags", "blind", api_name="/eval_send_pairs")
        note, table = client.predict(RUN, api_name="/eval_compare")
        assert "0 judged pairs" in note and [row[0] for row in value(table)["data"]] == ["tags", "blind"]

        # A rater sees none of it: eval runs name the systems behind the clips they judge blind.
        rater = Client(url, auth=("aki", PASSWORD), verbose=False)
        with pytest.raises(AppError, match="Rate tab"):
            rater.predict(None, None, None, api_name="/eval_runs")
        with pytest.raises(AppError, match="Rate tab"):
            rater.predict(RUN, "tags", "blind", api_name="/eval_send_pairs")
    finally:
        app.close()
        services.close()


def test_sending_pairs_without_an_admin_signed_in_says_so(data: Settings) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    services = StudioServices.create(data, start_worker=False)
    admin = services.rating.create_first_admin("director", PASSWORD)
    services.rating.add_rater(admin, "aki", PASSWORD)
    app = build_app(services)
    try:
        _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="needs an admin account: sign in with one in the Rate tab first"):
            client.predict(RUN, "tags", "blind", api_name="/eval_send_pairs")
        client.predict("aki", PASSWORD, api_name="/rate_sign_in")
        with pytest.raises(AppError, match="'aki' is a rater account"):
            client.predict(RUN, "tags", "blind", api_name="/eval_send_pairs")
        client.predict("director", PASSWORD, api_name="/rate_sign_in")
        assert "**2 new rating pairs**" in client.predict(RUN, "tags", "blind", api_name="/eval_send_pairs")
        with pytest.raises(AppError, match="System B: pick two different systems"):
            client.predict(RUN, "tags", "tags", api_name="/eval_send_pairs")
    finally:
        app.close()
        services.close()


def test_a_hosted_studio_shows_eval_runs_to_admins_only(data: Settings) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from engine.access import AccessPolicy

    services = StudioServices.create(data, start_worker=False, access=AccessPolicy(scope="owned"))
    app = build_app(services)
    try:
        _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
        visitor = Client(url, verbose=False)  # an anonymous visitor of a Space
        with pytest.raises(AppError, match="only admins see them"):
            visitor.predict(None, None, None, api_name="/eval_runs")
        with pytest.raises(AppError, match="only admins see them"):
            visitor.predict(RUN, item_key("tags", "pan", 1), api_name="/eval_clip")
    finally:
        app.close()
        services.close()
