"""Speed profiles on the preview model: diffusers' cache hooks skip real work, come off cleanly, are
recorded and reproduced; every combination that cannot work is refused before anything loads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.core.errors import InvalidRequest, UnsupportedCombination
from engine.core.export import read_embedded_settings, read_frames
from engine.core.families import HUNYUAN, WAN
from engine.core.generation import Engine
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.core.speed import apply_speed, check_attention, check_speed, count_evaluations, resolve_speed

STEPS = 6


def _req(**kw: object) -> GenerationRequest:
    base = dict(narrative="a girl runs across a rooftop at dusk", model="preview", seed=5, width=32, height=32,
                num_frames=5, steps=STEPS)
    base.update(kw)
    return GenerationRequest(**base)  # type: ignore[arg-type]


def _hooks(transformer: object) -> list[str]:
    """Names of every diffusers hook on the transformer's modules."""
    return [name for m in transformer.modules()  # type: ignore[attr-defined]
            if (reg := getattr(m, "_diffusers_hook", None)) is not None for name in reg.hooks]


def _run(engine: Engine, request: GenerationRequest) -> tuple[np.ndarray, int, object]:
    prepared = engine.prepare(request)
    engine._load(prepared)  # the cached pipeline: same object for every job below
    current = engine.models.current()
    assert current is not None
    pipe = current.pipe
    with count_evaluations(pipe.transformer, WAN) as computed:
        frames = engine.generate(prepared).frames
    return frames, computed[0], pipe


def test_each_cache_kind_computes_fewer_evaluations_and_comes_off_cleanly(studio_settings: Settings,
                                                                          one_torch_thread: None) -> None:
    engine = Engine(studio_settings)
    full, full_count, pipe = _run(engine, _req())
    assert full_count == 2 * STEPS  # conditional + unconditional pass per step
    assert _hooks(pipe.transformer) == []
    for cache, number in (("first-block", 0.2), ("taylorseer", 3.0)):
        frames, count, same = _run(engine, _req(cache=cache, cache_threshold=number))
        assert same is pipe and 0 < count < full_count, (cache, count)
        assert frames.shape == full.shape and not np.array_equal(frames, full)
        assert _hooks(pipe.transformer), cache  # diffusers' own hooks did the skipping
        again, count_again, _ = _run(engine, _req(cache=cache, cache_threshold=number))
        assert count_again == count and np.array_equal(again, frames)  # state reset between jobs
        back, back_count, _ = _run(engine, _req())  # the next job without a cache: nothing left behind
        assert back_count == full_count and np.array_equal(back, full) and _hooks(pipe.transformer) == []


def test_profiles_resolve_to_their_parts_and_explicit_parts_win() -> None:
    assert (resolve_speed(_req(), WAN).cache, resolve_speed(_req(), WAN).compile_blocks) == ("none", False)
    balanced = resolve_speed(_req(speed="balanced"), WAN)
    assert (balanced.cache, balanced.cache_threshold) == WAN.speed.profile("balanced")
    fast = resolve_speed(_req(speed="fast"), WAN)
    assert (fast.cache, fast.cache_threshold) == WAN.speed.profile("fast") and fast.cache != "none"
    own = resolve_speed(_req(speed="fast", cache="first-block"), WAN)
    assert (own.cache, own.cache_threshold) == ("first-block", 0.05)  # the kind's default number
    assert resolve_speed(own, WAN) == own  # a resolved request (history, an mp4) stays as it is


def test_switching_compile_and_backend_on_the_same_pipeline(studio_settings: Settings) -> None:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    engine = Engine(studio_settings)
    prepared = engine.prepare(_req())
    pipe = engine._load(prepared).pipe
    blocks = list(pipe.transformer.blocks)
    apply_speed(pipe, resolve_speed(_req(compile_blocks=True, attention="_native_math"), WAN))
    assert all(b._compiled_call_impl is not None for b in blocks)  # compiled lazily, on the first call
    processors = [m.processor for m in pipe.transformer.modules() if hasattr(m, "processor")]
    assert {p._attention_backend for p in processors} == {"_native_math"}
    apply_speed(pipe, resolve_speed(_req(), WAN))
    assert all(b._compiled_call_impl is None for b in blocks)
    assert {p._attention_backend for p in processors} == {None}
    assert _AttentionBackendRegistry.get_active_backend()[0].value == "native"  # the process-wide default too


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"cache": "mag"}, "cache", "magnitude ratios"),
    ({"cache": "pab"}, "cache", "one attention cache for both guidance passes"),
    ({"cache": "faster"}, "cache", "in one batch"),
    ({"attention": "flash"}, "attention", "needs a CUDA GPU"),
    ({"attention": "sage_hub"}, "attention", "needs a CUDA GPU"),
    ({"parallel": "ulysses"}, "parallel", "torchrun"),
])
def test_prepare_refuses_before_anything_loads(studio_settings: Settings, changes: dict[str, object], field: str,
                                               words: str) -> None:
    engine = Engine(studio_settings)
    with pytest.raises(UnsupportedCombination) as caught:
        engine.prepare(_req(**changes))
    assert caught.value.field == field and words in str(caught.value)
    assert engine.models.current() is None


def test_refusals_that_need_another_machine_are_checked_by_the_same_code(monkeypatch: pytest.MonkeyPatch) -> None:
    sequential = resolve_speed(_req(compile_blocks=True, offload="sequential"), WAN)
    with pytest.raises(UnsupportedCombination, match="sequential offload") as caught:
        check_speed(sequential, WAN, "cuda", offline=False)
    assert caught.value.field == "compile_blocks"
    with pytest.raises(UnsupportedCombination, match="mps"):
        check_speed(resolve_speed(_req(compile_blocks=True), WAN), WAN, "mps", offline=False)
    with pytest.raises(UnsupportedCombination, match="flash-attn"):  # not installed: diffusers' own reason
        check_attention("flash", "cuda", offline=False)
    with pytest.raises(UnsupportedCombination, match="kernels|offline"):
        check_attention("flash_hub", "cuda", offline=True)
    with pytest.raises(UnsupportedCombination, match="HunyuanVideo models do not take the mag cache"):
        check_speed(resolve_speed(_req(cache="mag"), HUNYUAN), HUNYUAN, "cpu", offline=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UnsupportedCombination, match="on a CPU use ulysses") as caught:
        check_speed(resolve_speed(_req(parallel="ring"), WAN), WAN, "cpu", offline=False)
    assert caught.value.field == "parallel"
    with pytest.raises(UnsupportedCombination, match="2 processes need 2 CUDA GPUs"):
        check_speed(resolve_speed(_req(parallel="ring"), WAN), WAN, "cuda", offline=False)
    with pytest.raises(UnsupportedCombination, match="offload none and no step cache"):
        check_speed(resolve_speed(_req(parallel="ulysses", speed="fast"), WAN), WAN, "cpu", offline=False)
    with pytest.raises(UnsupportedCombination, match="without compiled blocks"):
        check_speed(resolve_speed(_req(parallel="ulysses", compile_blocks=True), WAN), WAN, "cpu", offline=False)
    check_speed(resolve_speed(_req(parallel="ulysses"), WAN), WAN, "cpu", offline=False, num_heads=2)  # runs
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UnsupportedCombination, match="2 attention heads over 3 processes"):
        check_speed(resolve_speed(_req(parallel="ulysses"), WAN), WAN, "cpu", offline=False, num_heads=2)


@pytest.mark.parametrize(("changes", "field"), [
    ({"speed": "turbo"}, "speed"),
    ({"cache": "teacache"}, "cache"),
    ({"cache": "first-block", "cache_threshold": 1.5}, "cache_threshold"),
    ({"cache": "taylorseer", "cache_threshold": 2.5}, "cache_threshold"),
    ({"cache": "taylorseer", "cache_threshold": 1}, "cache_threshold"),
    ({"cache_threshold": 0.1}, "cache_threshold"),
    ({"compile_blocks": "yes"}, "compile_blocks"),
    ({"attention": "fastest"}, "attention"),
    ({"parallel": "tensor"}, "parallel"),
])
def test_the_request_refuses_bad_speed_values_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _req(**changes)
    assert caught.value.field == field


def test_speed_is_recorded_and_reproduced_from_the_mp4(studio_settings: Settings, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    first, second, third = (tmp_path / f"{n}.mp4" for n in ("a", "b", "c"))
    gen = ["--data-dir", str(studio_settings.data_dir), "--device", "cpu", "generate"]
    assert main([*gen, "--model", "preview", "--narrative", "a cat leaps", "--seed", "3", "--frames", "5",
                 "--width", "32", "--height", "32", "--steps", "4", "--speed", "fast", "--cache",
                 "first-block:0.2", "--attention", "_native_math", "--out", str(first)]) == 0
    request = read_embedded_settings(first)["request"]
    assert (request["speed"], request["cache"], request["cache_threshold"]) == ("fast", "first-block", 0.2)
    assert (request["compile_blocks"], request["attention"], request["parallel"]) == (False, "_native_math", "none")
    assert main([*gen, "--from", str(first), "--out", str(second)]) == 0
    assert read_embedded_settings(second)["request"] == request
    assert np.array_equal(read_frames(first), read_frames(second))
    assert main([*gen, "--from", str(first), "--speed", "balanced", "--out", str(third)]) == 0
    switched = read_embedded_settings(third)["request"]  # a new profile: the clip's own cache gives way
    assert (switched["cache"], switched["cache_threshold"]) == WAN.speed.profile("balanced")
    capsys.readouterr()
    assert main([*gen[:-1], "history", "show", "1", "--json"]) == 0
    assert '"cache": "first-block"' in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "words"), [
    (["--cache", "mag"], "cache: Wan models do not take the mag cache"),
    (["--cache", "first-block:lots"], "is not KIND or KIND:NUMBER"),
    (["--speed", "turbo"], "invalid choice: 'turbo'"),
    (["--attention", "flash"], "attention: 'flash' needs a CUDA GPU"),
])
def test_cli_refusals_exit_2_with_one_line(studio_settings: Settings, capsys: pytest.CaptureFixture[str],
                                           flags: list[str], words: str) -> None:
    try:  # argparse's own refusals leave through SystemExit, the engine's through the return code
        code = main(["--data-dir", str(studio_settings.data_dir), "--device", "cpu", "generate", "--model",
                     "preview", "--narrative", "a cat leaps", *flags])
    except SystemExit as exited:
        code = int(exited.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and len(err.splitlines()) == 1
    assert not list((studio_settings.data_dir).rglob("*.mp4"))


def test_hunyuanvideo_takes_both_caches_through_the_same_code(one_torch_thread: None) -> None:
    import torch

    from engine.core.preview import build_tiny_hunyuan_pipeline

    pipe = build_tiny_hunyuan_pipeline()
    pipe.set_progress_bar_config(disable=True)
    counts = {}
    for cache, number in (("none", None), ("first-block", 0.3), ("taylorseer", 3.0), ("none", None)):
        request = resolve_speed(_req(model="hunyuanvideo", cache=cache, cache_threshold=number), HUNYUAN)
        apply_speed(pipe, request)
        with torch.no_grad(), count_evaluations(pipe.transformer, HUNYUAN) as computed:
            pipe(prompt="a cat leaps", height=32, width=32, num_frames=5, num_inference_steps=STEPS,
                 generator=torch.Generator().manual_seed(0), output_type="latent")
        counts.setdefault(cache, []).append(computed[0])
    assert counts["none"] == [STEPS, STEPS]  # guidance-distilled: one pass per step, and the caches came off
    assert 0 < counts["first-block"][0] < STEPS and 0 < counts["taylorseer"][0] < STEPS


def test_the_profiles_save_the_work_their_notes_promise(studio_settings: Settings, one_torch_thread: None) -> None:
    engine = Engine(studio_settings)
    # TaylorSeer's schedule is fixed: at 10 steps balanced computes 6 of 10 steps per pass, fast 5 of 10.
    for speed, computed in (("quality", 20), ("balanced", 12), ("fast", 10)):
        _, count, _ = _run(engine, _req(speed=speed, steps=10))
        assert count == computed, speed
    # The Create tab's notes give the passes at 50 steps (of 100: two guidance passes a step).
    from engine.core.speed import PROFILE_NOTES

    for speed in ("balanced", "fast"):
        _, count, _ = _run(engine, _req(speed=speed, steps=50))
        assert f"{count} of 100" in PROFILE_NOTES[speed], (speed, count)
        # A wall-time figure from a CPU with random weights says so where creators read it.
        assert "faster" in PROFILE_NOTES[speed] and "(measured on a CPU, random weights)" in PROFILE_NOTES[speed]


def test_both_experts_of_a_two_expert_model_take_the_cache_and_lose_it() -> None:
    from engine.core.preview import build_tiny_two_expert_pipeline

    pipe = build_tiny_two_expert_pipeline()
    apply_speed(pipe, resolve_speed(_req(speed="fast"), WAN))
    assert _hooks(pipe.transformer) and _hooks(pipe.transformer_2)
    apply_speed(pipe, resolve_speed(_req(), WAN))
    assert _hooks(pipe.transformer) == [] and _hooks(pipe.transformer_2) == []
