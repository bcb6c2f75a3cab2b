"""Issue 18, finding 7 (timing): time on a pair is the server's, from serving to submission; the
page's figures are a hint, cut to what the server saw. A forged report (4 days, 40,000 replays)
changes neither the stored server time nor the too-fast flag."""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from app.services.rating_view import vote_values
from engine.core.errors import InvalidRequest
from engine.rating.types import JudgementForm

from support.rating import ADMIN, N1, RaterServer, Studio, age_serving, full_form, rater_server

FOUR_DAYS_S, FORGED_REPLAYS = 4 * 24 * 3600.0, 40_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaterServer]:
    with rater_server(tmp_path_factory.mktemp("timing"), {"n1": (N1, 9)}) as s:
        yield s


def test_forged_page_timing_against_a_served_studio(server: RaterServer) -> None:
    service = server.service
    ben = service.rater_by_name("ben")
    client = server.login("ben")
    for _ in range(2):
        served = service.next_pair(ben)
        assert served is not None
        client.predict(str(served.assignment_id), api_name="/rate_open")
        # What a rater who edits the page's script sends with Submit.
        forged = json.dumps({"aid": served.assignment_id, "token": "forged", "elapsed": FOUR_DAYS_S,
                             "replays": FORGED_REPLAYS})
        client.predict(forged, *vote_values(full_form("A")), api_name="/rate_submit")
        stored = service.repository.get_assignment(served.assignment_id)
        wall = (stored.submitted_at - stored.served_at).total_seconds()
        assert stored.status == "submitted" and stored.server_time_s == pytest.approx(wall, abs=0.01)
        assert stored.server_time_s < 60
        assert stored.time_spent_s <= stored.server_time_s + 2.0  # the hint, cut to the server's clock
        assert stored.replays <= 1 + stored.server_time_s / (served.num_frames / served.fps)
    admin = server.login(ADMIN)
    _, quality, _ = admin.predict(api_name="/rating_stats")
    row = next(r for r in quality["data"] if r[0] == "ben")
    assert row[-1] == "⚠ too fast" and int(row[-2].split()[0]) < 60
    mine = {v.assignment_id: v for v in service.judgements(ben)}
    assert all(v.server_time_s < 60 for v in mine.values() if v.status == "submitted")


def test_the_page_report_is_kept_when_it_fits_what_the_server_saw(studio: Studio) -> None:
    service = studio.service(gold_share=0, repeat_share=0, fast_median_s=10.0)
    aki = studio.rater("aki")
    pair = service.next_pair(aki)
    age_serving(studio.db, pair.assignment_id, 100)  # on screen for 100 s
    service.save_draft(aki, pair.assignment_id, JudgementForm(elapsed_s=40.0, replays=3))
    for _ in range(3):  # each save within the form's limits, together far beyond the wall clock
        service.save_draft(aki, pair.assignment_id, JudgementForm(elapsed_s=86_000.0, replays=10_000))
    service.submit(aki, pair.assignment_id, full_form(elapsed_s=86_000.0, replays=10_000))
    stored = service.repository.get_assignment(pair.assignment_id)
    assert stored.server_time_s == pytest.approx(100.0, abs=3.0)
    assert stored.time_spent_s == pytest.approx(stored.server_time_s + 2.0, abs=3.0)  # capped, not 258,040 s
    assert stored.replays <= 1 + int(stored.server_time_s)  # one pass of the 8-frame, 8 fps clip is 1 s
    # The answer is final: a later submit is refused and the first submission's time stays.
    with pytest.raises(InvalidRequest, match="final"):
        service.submit(aki, pair.assignment_id, full_form("B"))
    assert service.repository.get_assignment(pair.assignment_id).server_time_s == stored.server_time_s
    report = service.stats(studio.rater("director"))
    assert not next(r for r in report.raters if r.name == "aki").too_fast
