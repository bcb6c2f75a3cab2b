"""Issue 36, finding 4 (cost-aware quotas): the hourly cap counts work, not size alone (a clip
with four times the steps costs four times as much), and anonymous visitors share one hourly
pool, so a client that drops its cookie gets no fresh budget. Real server, preview model, SQLite."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from app import adapters
from app.services.context import StudioServices
from engine.access import REFERENCE_STEPS, AccessPolicy, QuotaExceeded, UsageLimits, Viewer, work
from engine.core.requests import GenerationRequest

from support.app import make_settings, serve, small_form

CLIP = 64 * 64 * 9  # small_form's width × height × frames


def _submit(client: Client, services: StudioServices, **changes: object) -> int:
    job_id, _ = client.predict(*adapters.form_to_values(small_form(**changes), services.taxonomy),
                               api_name="/submit")
    return int(job_id)


def test_rotating_cookies_does_not_raise_the_hourly_budget(tmp_path: Path, preview_folder: Path) -> None:
    policy = AccessPolicy("owned", UsageLimits(max_queued=10, pixel_frames_per_hour=2 * CLIP))
    with serve(make_settings(tmp_path, preview_folder), access=policy) as (services, _, first):
        _submit(first, services, narrative="first visitor, first clip")
        _submit(first, services, narrative="first visitor, second clip")
        for n in range(3):  # three "new visitors": a client without the cookie each time
            fresh = Client(first.src, verbose=False)
            with pytest.raises(AppError, match="shared"):
                _submit(fresh, services, narrative=f"cookie {n}")
        assert services.studio.history.list().total == 2


def test_steps_count_towards_the_hourly_budget(studio_settings: object) -> None:
    services = StudioServices.create(studio_settings, start_worker=False,  # type: ignore[arg-type]
                                     access=AccessPolicy("owned", UsageLimits(pixel_frames_per_hour=2 * CLIP)))
    try:
        runner, bob = services.runner, Viewer.user("bob")
        request = GenerationRequest(narrative="a cat naps", model="preview", width=64, height=64, num_frames=9,
                                    steps=REFERENCE_STEPS * 4)
        assert work(64, 64, 9, REFERENCE_STEPS * 4) == 4 * CLIP
        with pytest.raises(QuotaExceeded) as refused:  # four clips' worth of work: over a two-clip budget
            runner.submit(request, viewer=bob)
        assert refused.value.field == "size" and "steps" in refused.value.reason
        runner.submit(GenerationRequest(narrative="a cat naps", model="preview", width=64, height=64,
                                        num_frames=9, steps=2), viewer=bob)
        sizes = services.studio.history.repository.recent_sizes(since=timedelta(hours=1), owner=bob.owner)
        assert sizes == [(64, 64, 9, 2)]
    finally:
        services.close()
