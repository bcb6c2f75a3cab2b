"""The quantization registry: every list and rule about modes comes from engine/core/quantization.py."""
from __future__ import annotations

import pytest

from engine.core import quantization as q
from engine.core.errors import UnsupportedCombination
from engine.core.memory import check_combination, lower_profile
from engine.core.requests import QUANTIZATION_MODES, GenerationRequest


def test_the_request_the_form_and_the_cache_command_list_the_registry() -> None:
    assert QUANTIZATION_MODES == q.QUANTIZATION_MODES == tuple(m.name for m in q.MODES)
    # the `quantize` command's choices, in the order its help has always shown them
    assert q.CACHEABLE_MODES == ("quanto-int8", "quanto-int4", "quanto-fp8", "torchao-int8", "torchao-fp8",
                                 "fp8-layerwise")
    assert set(q.CACHEABLE_MODES) == {m.name for m in q.MODES if m.cacheable} == set(QUANTIZATION_MODES) - {"none"}
    for name in QUANTIZATION_MODES:
        assert GenerationRequest(narrative="a cat", quantization=name).quantization == name


def test_each_mode_says_which_library_applies_it() -> None:
    assert q.modes_of("torchao") == ("torchao-int8", "torchao-fp8")
    assert q.modes_of("quanto") == ("quanto-int8", "quanto-int4", "quanto-fp8")
    assert q.library_of("fp8-layerwise") == "layerwise"
    assert q.library_of("none") == q.library_of("no-such-mode") == "none"
    assert q.mode_named("no-such-mode") is None


@pytest.mark.parametrize("mode", q.modes_of("quanto"))
def test_quanto_weights_are_never_streamed(mode: str) -> None:
    with pytest.raises(UnsupportedCombination, match=f"{mode} weights cannot be streamed by 'group' offload"):
        check_combination(mode, "group", "cuda")


def test_fp8_modes_that_need_an_fp8_gpu_are_refused_on_a_cpu() -> None:
    needs = [m.name for m in q.MODES if m.needs_fp8_gpu]
    assert needs == ["torchao-fp8"]
    with pytest.raises(UnsupportedCombination, match="torchao-fp8 needs a CUDA GPU with fp8 support"):
        check_combination("torchao-fp8", "none", "cpu")


def test_the_out_of_memory_ladder() -> None:
    assert q.LOWER_MEMORY_ORDER == ("none", "fp8-layerwise", "torchao-int8", "quanto-int8", "quanto-int4")
    assert lower_profile("fp8-layerwise", "group") == "quantization=torchao-int8"
    assert lower_profile("quanto-int4", "group") == "offload=sequential"
