"""Live previews (issue 38): a small animated picture of the clean-clip estimate appears within the
first 20 % of the steps of a job that asked for it, in the data folder every process sees, and is
gone once the job ends; a job that did not ask (the API's default, the CLI) writes none."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.core.generation import Progress
from engine.core.previews import (LinearDecoder, LivePreview, PreviewFolder, StepRecorder, VaeDecoder,
                                  decoder_for, preview_every)
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.runner import JobRunner
from engine.studio import Studio

STEPS = 10


def _req(**kw: Any) -> GenerationRequest:
    base: dict[str, Any] = dict(narrative="a girl runs across a rooftop at dusk", model="preview", seed=3,
                                width=64, height=64, num_frames=9, steps=STEPS)
    base.update(kw)
    return GenerationRequest(**base)


def _watch(runner: JobRunner, job: list[int], seen: dict[int, bytes]) -> Any:
    """A progress callback: at each step, the preview file's bytes if there is one. At 20 % of the
    steps it waits (a moment, on the writer thread) for the first file, so the check is not a race."""
    def report(p: Progress) -> None:
        if p.stage != "denoising":
            return
        deadline = time.monotonic() + (20.0 if p.step == max(1, p.total // 5) else 0.0)
        while True:
            path = runner.preview_of(job[0]) if job else None
            if path is not None:
                try:
                    seen[p.step] = path.read_bytes()
                except FileNotFoundError:
                    pass
            if p.step in seen or time.monotonic() >= deadline:
                return
            time.sleep(0.02)
    return report


def test_preview_appears_within_a_fifth_of_the_steps_and_goes_at_the_end(studio_settings: Settings,
                                                                         tmp_path: Path) -> None:
    runner = JobRunner(Studio(studio_settings))
    job: list[int] = []
    seen: dict[int, bytes] = {}
    job.append(runner.submit(_req(), preview=True))
    record = runner.run_queued(job[0], progress=_watch(runner, job, seen))
    assert record.status == "done"
    first = min(seen)
    assert first <= STEPS // 5, f"first preview at step {first} of {STEPS}"
    (tmp_path / "p.webp").write_bytes(seen[first])
    with Image.open(tmp_path / "p.webp") as im:
        assert im.format == "WEBP" and max(im.size) <= 128
        assert getattr(im, "n_frames", 1) == 3  # 9 frames: three latent frames
        im.convert("RGB")  # decodable
    assert len(seen[first]) < 50_000
    # Gone at the end, with the marker that asked for it.
    assert runner.preview_of(job[0]) is None
    assert not list(studio_settings.previews_dir.glob(f"job-{job[0]}.*"))


def test_no_preview_unless_asked_or_when_the_studio_turns_them_off(studio_settings: Settings) -> None:
    runner = JobRunner(Studio(studio_settings))
    job: list[int] = []
    seen: dict[int, bytes] = {}
    job.append(runner.submit(_req(steps=5)))  # not asked: the API's and the CLI's default
    runner.run_queued(job[0], progress=_watch(runner, job, seen))
    assert not seen
    off = JobRunner(Studio(replace(studio_settings, previews="off")))
    job[:] = [off.submit(_req(steps=5), preview=True)]
    off.run_queued(job[0], progress=_watch(off, job, seen))
    assert not seen and not list(studio_settings.previews_dir.glob("job-*"))


def test_previews_setting_is_on_or_off() -> None:
    from engine.core.errors import InvalidRequest

    assert Settings(previews="OFF").previews == "off"
    with pytest.raises(InvalidRequest, match="previews"):
        Settings(previews="sometimes")


def test_the_clean_estimate_is_x_t_minus_sigma_v_for_flow_matching() -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(4)
    clean, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    t = scheduler.timesteps[1]
    sigma = float(t) / 1000.0
    x_t = (1 - sigma) * clean + sigma * noise
    with StepRecorder(scheduler) as recorder:
        scheduler._step_index = 1
        after = scheduler.step(noise - clean, t, x_t, return_dict=False)[0]  # the exact velocity
        assert torch.allclose(recorder.clean(after), clean, atol=1e-4)
    assert "step" not in vars(scheduler)  # the wrapper is gone after the run


def test_decoders_the_fitted_projection_and_the_mini_vae(tmp_path: Path) -> None:
    import torch

    from engine.core.families.mini import MiniVAE
    from engine.core.preview import build_preview_pipeline

    pipe = build_preview_pipeline()
    linear = decoder_for(pipe, tmp_path / "cache")
    assert isinstance(linear, LinearDecoder) and linear.weight.shape == (16, 3)
    assert list((tmp_path / "cache").glob("*.json"))  # kept: the next load reads it
    again = decoder_for(pipe, tmp_path / "cache")
    assert isinstance(again, LinearDecoder) and np.allclose(again.weight, linear.weight)
    frames = linear.frames(torch.randn(1, 16, 3, 4, 4))
    assert frames.shape == (3, 4, 4, 3) and frames.dtype == np.uint8

    class Mini:
        vae = MiniVAE(latents_mean=[0.0] * 16, latents_std=[1.0] * 16)

    tiny = decoder_for(Mini())
    assert isinstance(tiny, VaeDecoder)
    assert tiny.frames(torch.randn(1, 16, 2, 8, 8)).shape == (5, 32, 32, 3)


def test_live_preview_file_is_small_and_replaced_whole(tmp_path: Path) -> None:
    folder = PreviewFolder(tmp_path / "previews")
    folder.want(4)
    live = folder.live(4)
    assert live.due(preview_every(30), 30) and not live.due(30, 30) and not live.due(1, 30)
    live.show(np.zeros((40, 256, 448, 3), np.uint8), 4.0)
    live.flush()
    path = folder.current(4)
    assert path is not None
    with Image.open(path) as im:
        assert max(im.size) == 128 and getattr(im, "n_frames", 1) <= 24
    assert not list(path.parent.glob(".*.tmp"))
    live.close()
    assert folder.current(4) is None and not folder.wanted(4)
    assert not LivePreview(tmp_path / "x.webp", wanted=lambda: False).due(3, 30)
