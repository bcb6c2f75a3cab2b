"""The built-in suite covers the taxonomy; suite files round-trip through the strict loader."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.core.errors import InvalidRequest
from engine.core.pks import load_taxonomy
from engine.core.settings import Settings
from engine.eval.suite import load_suite


def test_builtin_suite_covers_every_measured_value_and_every_axis() -> None:
    tax = load_taxonomy()
    suite = load_suite("builtin")
    base = [p for p in suite.prompts if p.base is None]
    long = [p for p in suite.prompts if p.base is not None]
    assert len(base) >= 48 and len(long) >= 12
    for field in ("camera.movement", "style.timing", "motion.intensity"):
        assert {p.tags[field] for p in base} == set(tax.field(field).value_ids), field
    assert {f.split(".")[0] for p in base for f in p.tags} == {a.id for a in tax.axes}
    assert len({p.narrative for p in base}) == len(base)  # no two prompts are the same request
    by_id = {p.id: p for p in suite.prompts}
    for p in long:
        assert p.words >= 150 and p.tags == by_id[p.base].tags and p.narrative.startswith(by_id[p.base].narrative)
    assert [s.id for s in suite.systems] == ["preview-tags", "preview-no-tags"]
    assert len(suite.items()) == 2 * len(suite.prompts)


def test_the_builtin_suite_written_out_loads_back_the_same(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "suite.yaml"
    assert main(["--data-dir", str(settings.data_dir), "eval", "suite", "--out", str(out)]) == 0
    assert load_suite(out).fingerprint() == load_suite("builtin").fingerprint()


def test_aliases_and_unknown_keys_are_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("seeds: &s [1]\nprompts: []\nsystems: []\n")
    with pytest.raises(InvalidRequest, match="line 1: anchors and aliases"):
        load_suite(path)
    path.write_text("seeds: [1]\nprompts:\n  - {id: a, narrative: x, mood: happy}\nsystems: [{id: s, model: preview}]\n")
    with pytest.raises(InvalidRequest, match=r"s.yaml:3: prompts\[0\].mood: is not a known key"):
        load_suite(path)
    path.write_text("prompts:\n  - {id: a, narrative: x}\nsystems: [{id: s, model: preview}]\n")
    with pytest.raises(InvalidRequest, match=r"prompts\[0\].seeds: no seeds"):
        load_suite(path)
