"""Issue 18, finding 7 (session): the rater behind a Rate-tab event is the logged-in account, never
whatever another session's state holds. Played against served studios, with and without login."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from support.rating import ADMIN, N1, PASSWORD, RaterServer, rater_server

RATER = "aki"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RaterServer]:
    with rater_server(tmp_path_factory.mktemp("session"), {"n1": (N1, 9)}) as s:
        yield s


def _signed_in_admin(server: RaterServer) -> Client:
    admin = server.login(ADMIN)
    admin.predict(ADMIN, PASSWORD, api_name="/rate_sign_in")  # the admin's session state now names the admin
    admin.predict(api_name="/rating_stats")  # which opens the admin-only statistics
    return admin


def test_reusing_an_admin_sessions_hash_gives_a_rater_nothing_of_the_admins(server: RaterServer) -> None:
    admin = _signed_in_admin(server)
    theirs = server.service.next_pair(server.service.rater_by_name(ADMIN))
    assert theirs is not None
    admin.predict(str(theirs.assignment_id), api_name="/rate_open")  # the admin's pair state too
    mallory = server.login(RATER)
    mallory.session_hash = admin.session_hash  # the replay of finding 7
    for api, args in (("/rating_stats", ()), ("/rating_leaderboard", ("model", ""))):
        with pytest.raises(AppError, match="Only an admin may do this"):
            mallory.predict(*args, api_name=api)
    with pytest.raises(AppError, match="belongs to another rater"):
        mallory.predict(str(theirs.assignment_id), api_name="/rate_open")
    with pytest.raises(AppError, match="belongs to another rater"):  # the admin's pair, in the admin's state
        mallory.predict("", *["A", 1, 0, 0] * 5, api_name="/rate_submit")
    assert server.service.repository.get_assignment(theirs.assignment_id).status == "pending"
    admin.predict(api_name="/rating_stats")  # the admin's own session is untouched
    server.service.skip(server.service.rater_by_name(ADMIN), theirs.assignment_id)


def test_a_rater_login_cannot_sign_in_on_the_tab_as_someone_else(server: RaterServer) -> None:
    mallory = server.login(RATER)
    with pytest.raises(AppError, match="logged in to the studio as aki"):
        mallory.predict(ADMIN, PASSWORD, api_name="/rate_sign_in")
    with pytest.raises(AppError, match="Only an admin may do this"):
        mallory.predict(api_name="/rating_stats")


def test_without_login_the_tab_sign_in_belongs_to_its_own_session(tmp_path: Path) -> None:
    with rater_server(tmp_path, {"n1": (N1, 9)}, auth=False) as server:
        admin = Client(server.url, verbose=False)
        admin.predict(ADMIN, PASSWORD, api_name="/rate_sign_in")
        admin.predict(api_name="/rating_stats")
        other = Client(server.url, verbose=False)  # another browser: its own session, signed in to nothing
        with pytest.raises(AppError, match="Sign in with your rater account first"):
            other.predict(api_name="/rating_stats")
        other.predict(RATER, PASSWORD, api_name="/rate_sign_in")
        with pytest.raises(AppError, match="Only an admin may do this"):
            other.predict(api_name="/rating_stats")
