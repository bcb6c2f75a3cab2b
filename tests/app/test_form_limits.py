"""Each number box's hint and the refusal of a value outside it name the same range, for every model."""
from __future__ import annotations

import re

import pytest

from app import adapters
from app.adapters import ui_message
from app.tabs.create import NUMBER_KEYS, number_props
from engine.core.errors import InvalidRequest
from engine.core.registry import REGISTRY


def _hint_range(info: str) -> tuple[int, int]:
    if m := re.match(r"(\d+)–(\d+)", info):
        return int(m[1]), int(m[2])
    m = re.search(r"up to (\d+)", info)  # frames: "4k+1, up to 33"
    assert m, info
    return 1, int(m[1])


@pytest.mark.parametrize("model", sorted(REGISTRY))
def test_a_value_outside_a_boxs_hint_is_refused_in_the_hints_own_numbers(model: str) -> None:
    props = number_props(REGISTRY[model])
    for key in NUMBER_KEYS:
        low, high = _hint_range(props[key]["info"])
        for value in (low - 1, high + 1):
            form = adapters.FormValues(narrative="a girl runs", model=model, random_seed=True, **{key: value})
            with pytest.raises(InvalidRequest) as info:  # the request's checks, then the model's (the engine's)
                REGISTRY[model].resolve(adapters.request_from_form(form), seed=1)
            message = ui_message(info.value)
            assert info.value.field == key
            assert f"from {low} to {high}" in message or f"at most {high}" in message, (key, value, message)
            assert "4096" not in message and "1024" not in message  # not the engine's outer bounds
