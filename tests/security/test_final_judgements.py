"""Issue 36, finding 1 (final means final): a judgement is stored once, before the reveal. After
the reveal the rater cannot change it (reopen + resubmit is refused); only an admin can void it,
and the reason is kept. Drafts stay editable before submit."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from gradio_client.exceptions import AppError

from app.services.rating_view import vote_values
from engine.core.errors import InvalidRequest
from engine.rating.types import DIMENSIONS, JudgementForm, PermissionDenied, Vote

from support.rating import ADMIN, N1, RaterServer, Studio, full_form, rater_server, studio, template  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaterServer]:
    with rater_server(tmp_path_factory.mktemp("final"), {"n1": (N1, 9)}) as s:
        yield s


def _winners(server: RaterServer, task: int) -> dict[str, int | None]:
    return {v.dimension: v.winner_generation_id for v in server.service.repository.votes(assignment_ids=[task])}


def test_a_rater_cannot_change_a_judgement_after_the_reveal(server: RaterServer) -> None:
    service = server.service
    ben = service.rater_by_name("ben")
    client = server.login("ben")
    served = service.next_pair(ben)
    assert served is not None
    client.predict(str(served.assignment_id), api_name="/rate_open")
    reveal = str(client.predict("", *vote_values(full_form("A")), api_name="/rate_submit"))
    assert "which clip was which" in reveal
    before = _winners(server, served.assignment_id)
    assert len(before) == len(DIMENSIONS) and len(set(before.values())) == 1
    # The attack: reopen the same task after the reveal and submit the other clip everywhere.
    client.predict(str(served.assignment_id), api_name="/rate_open")
    with pytest.raises(AppError, match="final"):
        client.predict("", *vote_values(full_form("B")), api_name="/rate_submit")
    assert _winners(server, served.assignment_id) == before
    with pytest.raises(InvalidRequest, match="final"):  # the service, called directly, says the same
        service.submit(ben, served.assignment_id, full_form("B"))
    assert _winners(server, served.assignment_id) == before


def test_drafts_change_freely_and_an_admin_voids_with_a_reason(studio: Studio) -> None:  # noqa: F811
    service = studio.service(gold_share=0, repeat_share=0)
    aki, admin = studio.rater("aki"), studio.rater(ADMIN)
    pair = service.next_pair(aki)
    for choice in ("A", "B", "tie"):  # before submit: as many drafts as the rater likes
        service.save_draft(aki, pair.assignment_id, JudgementForm({"visual_quality": Vote(choice)}))
    assert service.next_pair(aki).draft.votes["visual_quality"].choice == "tie"
    service.submit(aki, pair.assignment_id, full_form("A"))
    with pytest.raises(InvalidRequest, match="final"):
        service.save_draft(aki, pair.assignment_id, JudgementForm({"visual_quality": Vote("B")}))
    with pytest.raises(PermissionDenied):  # a rater cannot void their own answer either
        service.void(aki, pair.assignment_id, "changed my mind")
    with pytest.raises(InvalidRequest) as empty:
        service.void(admin, pair.assignment_id, "  ")
    assert empty.value.field == "reason"
    counted = len(service.repository.votes())
    view = service.void(admin, pair.assignment_id, "rater reported a misclick on dimension 2")
    assert view.status == "voided" and view.void_reason == "rater reported a misclick on dimension 2"
    assert len(service.repository.votes()) == counted - len(DIMENSIONS)  # no longer counts anywhere
    mine = next(v for v in service.judgements(aki) if v.assignment_id == pair.assignment_id)
    assert mine.status == "voided" and mine.votes["visual_quality"].choice == "A"  # kept on record
    with pytest.raises(InvalidRequest, match="already voided"):
        service.void(admin, pair.assignment_id, "again")
    with pytest.raises(InvalidRequest, match="final"):  # voided is not reopened for editing
        service.submit(aki, pair.assignment_id, full_form("B"))
    assert service.next_pair(aki).assignment_id != pair.assignment_id  # a repeat would be a new task


def test_void_from_the_command_line(studio: Studio) -> None:  # noqa: F811
    service = studio.service(gold_share=0, repeat_share=0)
    aki = studio.rater("aki")
    pair = service.next_pair(aki)
    service.submit(aki, pair.assignment_id, full_form("A"))
    studio.db.dispose()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "--data-dir", str(studio.settings.data_dir), "rating",
                               "void", *args], capture_output=True, text=True, cwd=REPO, timeout=120)

    refused = cli(str(pair.assignment_id), "--reason", "x", "--admin", "aki")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "admin" in refused.stderr
    done = cli(str(pair.assignment_id), "--reason", "duplicate account", "--admin", ADMIN)
    assert done.returncode == 0, done.stderr
    assert f"task {pair.assignment_id} voided: duplicate account" in done.stdout
