"""Issue 18, finding 3: on a hosted studio every job and history entry has an owner.

Two visitors of one served studio (two gradio_client sessions, no sign-in, "owned" history):
the second can neither see, run, reuse, cancel nor delete the first one's jobs, and per-user
caps stop a burst of maximum-size jobs. A private studio ("shared", the default on 127.0.0.1)
keeps the single-user behaviour. Real server, real preview model, real SQLite.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from app.services.identity import Identity  # noqa: E402
from engine.access import AccessPolicy, QuotaExceeded, UsageLimits, Viewer  # noqa: E402
from engine.core.requests import GenerationRequest  # noqa: E402

from support.app import make_settings, serve, small_form  # noqa: E402

OWNED = AccessPolicy("owned", UsageLimits(max_queued=3, pixel_frames_per_hour=64 * 64 * 9 * 6))


@pytest.fixture(scope="module")
def hosted_studio(tmp_path_factory: pytest.TempPathFactory,
                  preview_folder: Path) -> Iterator[tuple[StudioServices, str]]:
    settings = make_settings(tmp_path_factory.mktemp("owned"), preview_folder)
    with serve(settings, access=OWNED) as (services, _, client):
        yield services, client.src


@pytest.fixture
def hosted(hosted_studio: tuple[StudioServices, str]) -> tuple[StudioServices, Client, Client]:
    """Two new visitors (sessions of their own) of the hosted studio."""
    services, url = hosted_studio
    return services, Client(url, verbose=False), Client(url, verbose=False)


def _submit(client: Client, services: StudioServices, **changes: Any) -> int:
    job_id, _ = client.predict(*adapters.form_to_values(small_form(**changes), services.taxonomy),
                               api_name="/submit")
    return int(job_id)


def _listed(client: Client) -> int:
    """How many history entries this visitor's History shows."""
    gallery, _, _label = client.predict("", "", "", "", 1, api_name="/history")
    return len(gallery)


def test_another_visitor_cannot_see_run_cancel_or_delete_a_job(hosted: tuple[StudioServices, Client, Client]) -> None:
    services, alice, mallory = hosted
    history = services.studio.history
    job = _submit(alice, services, narrative="alice's secret rooftop scene")
    record = history.get(job)
    assert record.owner is not None and record.owner.startswith("anon:")

    # The queue shows Mallory only a place in line, not the job's number, model or text.
    _, table = mallory.predict(api_name="/queue")
    assert all("secret" not in str(row) and job not in row for row in table["data"])
    # Cancel, run, open, reuse and delete by number all read as "no such entry".
    for call in ((str(job), "/remove_job"), (job, "/run_job"), (str(job), "/reuse"), (str(job), "/delete_ask")):
        with pytest.raises(AppError, match="does not exist"):
            mallory.predict(*call[:-1], api_name=call[-1])
    with pytest.raises(AppError, match="does not exist"):
        mallory.predict(str(job), api_name="/history_entry")
    with pytest.raises(AppError, match="does not exist"):
        mallory.predict(str(job), "", "", "", "", 1, api_name="/delete")
    assert history.get(job).status == "queued"
    assert _listed(mallory) == 0

    # Alice still sees and removes her own job.
    assert _listed(alice) == 1
    alice.predict(str(job), api_name="/remove_job")
    assert history.get(job).status == "cancelled"
    alice.predict(str(job), "", "", "", "", 1, api_name="/delete")


def test_per_user_caps_stop_a_burst_and_leave_others_alone(hosted: tuple[StudioServices, Client, Client]) -> None:
    services, alice, mallory = hosted
    history = services.studio.history
    before = history.list(limit=100).total
    jobs = [_submit(mallory, services, narrative=f"burst {i}") for i in range(3)]
    with pytest.raises(AppError, match="limit is 3 at a time"):
        _submit(mallory, services, narrative="one too many")
    assert history.list(limit=100).total == before + 3  # the refused one wrote nothing
    other = _submit(alice, services, narrative="alice is not held up")  # caps are per user
    for job in jobs:
        mallory.predict(str(job), api_name="/remove_job")
    alice.predict(str(other), api_name="/remove_job")
    # The hour's size budget: removed-before-start jobs cost nothing, a too-large job is refused.
    with pytest.raises(AppError, match="megapixel-frames"):
        _submit(mallory, services, narrative="too big for the hour", width=128, height=128, num_frames=33)


def test_only_an_admin_unloads_the_models_of_a_hosted_studio(hosted: tuple[StudioServices, Client, Client]) -> None:
    """Free memory slows every user's next clip: a visitor of a hosted studio is refused."""
    _, _, mallory = hosted
    with pytest.raises(AppError, match="only an admin can unload"):
        mallory.predict(api_name="/free_memory")


def test_a_private_studio_frees_memory_for_its_user(tmp_path: Path, preview_folder: Path) -> None:
    with serve(make_settings(tmp_path, preview_folder)) as (services, _, client):
        client.predict(api_name="/free_memory")  # the single user of a private studio may unload


def test_the_usage_gate_counts_per_owner_and_exempts_admins(studio_settings: Any) -> None:
    services = StudioServices.create(studio_settings, start_worker=False,
                                     access=AccessPolicy("owned", UsageLimits(max_queued=1)))
    try:
        runner = services.runner
        request = GenerationRequest(narrative="a cat naps", model="preview", width=64, height=64, num_frames=9)
        bob, admin = Viewer.user("bob"), Viewer.user("root", admin=True)
        runner.submit(request, viewer=bob)
        with pytest.raises(QuotaExceeded) as refused:
            runner.submit(request, viewer=bob)
        assert refused.value.field == "queue"
        runner.submit(request, viewer=admin)
        runner.submit(request, viewer=admin)  # admins are not capped
        assert services.studio.history.repository.usage(bob.owner, since=__import__("datetime").timedelta(hours=1)) \
            == (1, 64 * 64 * 9)
    finally:
        services.close()


def test_a_shared_studio_keeps_the_single_user_behaviour(tmp_path: Path, preview_folder: Path) -> None:
    with serve(make_settings(tmp_path, preview_folder)) as (services, _, first):
        second = Client(first.src, verbose=False)
        job = _submit(first, services, narrative="everyone may see this")
        assert _listed(second) == 1
        second.predict(str(job), api_name="/remove_job")
        assert services.studio.history.get(job).status == "cancelled"


def test_signed_in_admins_see_everything_and_users_only_theirs(tmp_path: Path, preview_folder: Path) -> None:
    identity = Identity("table", frozenset({"boss"}))
    accounts = [("boss", "boss-pass-1"), ("ann", "ann-pass-1"), ("ben", "ben-pass-1")]
    with serve(make_settings(tmp_path, preview_folder), access=AccessPolicy("owned"), identity=identity,
               launch_kwargs={"auth": accounts}, client_auth=accounts[0]) as (services, _, boss):
        ann, ben = (Client(boss.src, auth=pair, verbose=False) for pair in accounts[1:])
        job = _submit(ann, services, narrative="ann's clip")
        assert services.studio.history.get(job).owner == "user:ann"
        assert _listed(ben) == 0
        assert _listed(boss) == 1
        boss.predict(str(job), api_name="/remove_job")  # an admin may manage anyone's job
        assert services.studio.history.get(job).status == "cancelled"


def test_each_browser_gets_its_own_http_only_visitor_cookie(hosted_studio: tuple[StudioServices, str]) -> None:
    import httpx

    _, url = hosted_studio
    first, second = httpx.get(url), httpx.get(url)
    cookies = [r.headers.get("set-cookie", "") for r in (first, second)]
    assert all(c.startswith("animatrix-visitor=") and "HttpOnly" in c and "SameSite=Lax" in c for c in cookies)
    assert cookies[0].split(";")[0] != cookies[1].split(";")[0]  # random per browser
    again = httpx.get(url, cookies={"animatrix-visitor": first.cookies["animatrix-visitor"]})
    assert "set-cookie" not in again.headers or "animatrix-visitor" not in again.headers["set-cookie"]


def test_the_launch_flags_pick_the_history_scope_and_caps() -> None:
    from app.config import ConfigError, parse_options

    private = parse_options([], {})
    assert private.history_scope == "shared" and private.usage_limits() == (None, None)
    assert private.local_models_allowed
    for argv, env in ((["--host", "0.0.0.0"], {}), (["--auth", "a:b"], {}), (["--share"], {}),
                      ([], {"SPACE_ID": "me/studio"}), ([], {"GRADIO_SERVER_NAME": "0.0.0.0"})):
        hosted_opts = parse_options(argv, env)
        assert hosted_opts.history_scope == "owned", (argv, env)
        assert hosted_opts.usage_limits() == (4, 2000 * 10**6) and not hosted_opts.local_models_allowed
    assert parse_options(["--host", "0.0.0.0", "--shared-history"], {}).history_scope == "shared"
    tuned = parse_options(["--history", "owned", "--max-queued-per-user", "0", "--max-megapixel-frames-per-hour",
                           "50", "--allow-local-models", "--admins", "boss, ann"], {})
    assert tuned.usage_limits() == (None, 50 * 10**6) and tuned.local_models_allowed
    assert tuned.admins == ("boss", "ann")
    for bad, field in ((["--history", "mine"], "--history"), (["--max-queued-per-user", "-1"], "--max-queued"),
                       ([], "ANIMATRIX_HISTORY")):
        with pytest.raises(ConfigError, match=field):
            parse_options(bad, {"ANIMATRIX_HISTORY": "everyone"} if not bad else {})
