"""Issue 36 (cost-aware quotas): YAML from strangers is bounded in size *and* parse cost. A
243 KiB flow-style preset used to hold a CPU for seconds (18 s on the reporter's machine) and slow
every other visitor; now it is refused before parsing, and a small file packed with values stops
at the preset's value budget."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.core.errors import InvalidRequest
from engine.core.pks import load_taxonomy
from engine.core.presets import MAX_PRESET_BYTES, MAX_PRESET_NODES, PresetLibrary
from engine.core.yamlsafe import load_yaml_text


def _flow(n: int) -> str:
    return "name: flood\nnarrative: x\ntags: {" + ", ".join(f"k{i}: [a, b, {{x: 1}}]" for i in range(n)) + "}\n"


@pytest.mark.parametrize("entries", [11_000, 1_200])  # about 243 KiB, and under the size bound
def test_a_flow_style_preset_is_refused_in_milliseconds(tmp_path: Path, entries: int) -> None:
    library = PresetLibrary(tmp_path / "builtin", tmp_path / "user", load_taxonomy())
    hostile = tmp_path / "flood.yaml"
    hostile.write_text(_flow(entries), encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as refused:
        library.import_file(hostile)
    took = time.perf_counter() - started
    assert took < 0.5, f"{took:.2f} s"
    assert refused.value.field == "preset"
    assert ("larger than" in refused.value.reason if hostile.stat().st_size > MAX_PRESET_BYTES
            else f"more than {MAX_PRESET_NODES} values" in refused.value.reason), refused.value.reason
    assert not list((tmp_path / "user").glob("*.yaml")) if (tmp_path / "user").exists() else True


def test_every_yaml_reader_has_a_value_budget() -> None:
    with pytest.raises(InvalidRequest, match="more than 100 values"):
        load_yaml_text("[" + ", ".join(["1"] * 500) + "]", "the file", "config", max_nodes=100)
    assert load_yaml_text("[1, 2, 3]", "the file", "config", max_nodes=4) == [1, 2, 3]
