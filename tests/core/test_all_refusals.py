"""Every bad setting of a request is refused at once, each named, not one a click (issue: steps 0,
guidance -3 and fps 0 gave only the fps error)."""
from __future__ import annotations

import pickle

import pytest

from engine.cli import main
from engine.core.errors import InvalidRequest
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings


def test_a_request_names_every_bad_field_in_one_refusal() -> None:
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest(narrative="a cat", model="preview", steps=0, guidance=-3.0, fps=0)
    fields = [p.field for p in caught.value.problems()]
    assert sorted(fields) == ["fps", "guidance", "steps"], fields
    text = str(caught.value)
    assert "steps: must be from 1 to 200, got 0" in text and "guidance:" in text and "fps:" in text
    # one bad field reads as before: field, then what is allowed
    with pytest.raises(InvalidRequest) as one:
        GenerationRequest(narrative="a cat", model="preview", steps=0)
    assert str(one.value) == "steps: must be from 1 to 200, got 0" and one.value.problems() == (one.value,)


def test_an_empty_narrative_and_bad_numbers_come_together_and_survive_a_process_pool() -> None:
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest(narrative=" ", model="preview", width=3, seed=-1)
    again = pickle.loads(pickle.dumps(caught.value))
    assert [p.field for p in again.problems()] == [p.field for p in caught.value.problems()]
    assert caught.value.field == "narrative" and {"width", "seed"} <= {p.field for p in again.problems()}


def test_the_command_line_prints_every_bad_flag_on_one_line(settings: Settings,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(settings.data_dir), "--device", "cpu", "generate", "--model", "preview",
                 "--narrative", "a cat", "--steps", "0", "--guidance", "-3", "--fps", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(name in err[0] for name in ("steps:", "guidance:", "fps:")), err[0]
