"""The shared small tools: the number checker, average ranks and lazy exports."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.core.errors import InvalidRequest
from engine.core.toolkit.numbers import NotANumber, as_number, check_number, range_refusal
from engine.core.toolkit.ranks import average_ranks


@pytest.mark.parametrize("value, kwargs, expected", [
    (5, {"whole": True}, 5),
    (5.0, {"whole": True, "lenient": True}, 5),
    (" 24 ", {"whole": True, "lenient": True}, 24),
    ("2e-5", {"lenient": True}, 2e-5),
    (3, {}, 3.0),
])
def test_as_number_takes(value: object, kwargs: dict, expected: float) -> None:
    got = as_number(value, **kwargs)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, kwargs, shown", [
    (True, {"whole": True}, "True"),
    (5.0, {"whole": True}, "5.0"),  # strict: a float is no whole number, even 5.0
    (1.5, {"whole": True, "lenient": True}, "1.5"),
    ("1.5", {"whole": True, "lenient": True}, "1.5"),
    ("x", {"lenient": True}, "'x'"),
    ("3", {}, "'3'"),  # strict: text is no number
    (float("nan"), {"finite": True}, "nan"),
])
def test_as_number_refuses(value: object, kwargs: dict, shown: str) -> None:
    with pytest.raises(NotANumber) as caught:
        as_number(value, **kwargs)
    assert caught.value.shown == shown


def test_range_refusal_words() -> None:
    assert range_refusal(5, low=1, high=10) is None
    assert range_refusal(0, low=1, high=10, unit=" steps") == "must be from 1 to 10 steps, got 0"
    assert range_refusal(40.0, low=0.0, high=30.0, fmt="g", got=40) == "must be from 0 to 30, got 40"
    assert range_refusal(40, low=0, high=30, between=True) == "must be between 0 and 30, got 40"
    assert range_refusal(0.0, above=0.0, high=1.0) == "must be above 0.0 up to 1.0, got 0.0"
    assert range_refusal(0, low=1) == "must be at least 1, got 0"
    assert range_refusal(9, high=8) == "must be at most 8, got 9"
    assert range_refusal(float("nan"), low=0.0, high=1.0) is not None


def test_check_number_names_the_field_and_what_is_allowed() -> None:
    with pytest.raises(InvalidRequest, match=r"must be a whole number from 1 to 200, got 'x'") as caught:
        check_number("steps", "x", whole=True, low=1, high=200)
    assert caught.value.field == "steps"
    with pytest.raises(InvalidRequest, match=r"must be a number, got 'x'"):
        check_number("guidance", "x", lenient=True)
    with pytest.raises(InvalidRequest, match=r"must be from 1 to 200, got 500"):
        check_number("steps", 500, whole=True, low=1, high=200)
    assert check_number("guidance", 5, low=0.0, high=30.0) == 5.0


def test_average_ranks_share_ties() -> None:
    assert average_ranks(np.array([10.0, 20.0, 20.0, 30.0])).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks(np.array([3.0, 1.0, 2.0])).tolist() == [3.0, 1.0, 2.0]
    assert average_ranks(np.array([], dtype=float)).tolist() == []


def test_lazy_exports_load_on_first_use() -> None:
    code = ("import sys, engine.storage as s, engine.training as t\n"
            "assert 'sqlalchemy' not in sys.modules\n"
            "assert s.HistoryService.__name__ == 'HistoryService' and 'HistoryService' in vars(s)\n"
            "assert t.load_config\n"
            "try:\n    s.Nothing\nexcept AttributeError as e:\n    assert 'Nothing' in str(e)\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_reason_refuses_out_of_range_with_the_kind_too() -> None:
    with pytest.raises(InvalidRequest, match=r"^replays: must be a whole number from 0 to 10000, got 10001$"):
        check_number("replays", 10_001, whole=True, low=0, high=10_000, one_reason=True)
    with pytest.raises(InvalidRequest, match=r"must be a whole number from 1 to 5, got True"):
        check_number("score_a", True, whole=True, low=1, high=5, one_reason=True)
