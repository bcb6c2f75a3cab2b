"""A state location with a scheme fsspec does not know is refused with every scheme it does know."""
from __future__ import annotations

import fsspec
import pytest

from engine.core.errors import InvalidRequest
from engine.curation.state import StateStore


def test_an_unknown_scheme_lists_every_known_one() -> None:
    with pytest.raises(InvalidRequest) as err:
        StateStore("nosuchscheme://bucket/run")
    assert err.value.field == "state" and "nosuchscheme://bucket/run" in err.value.reason
    listed = err.value.reason.split("one of: ", 1)[1].split(", ")
    assert listed == sorted(fsspec.available_protocols()) and "..." not in err.value.reason
