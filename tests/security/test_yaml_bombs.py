"""YAML alias bombs ("billion laughs") are refused fast and cheaply by every loader that reads user YAML."""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from engine.core.errors import InvalidRequest, shown
from engine.core.pks import load_taxonomy
from engine.core.presets import PresetLibrary
from engine.core.settings import Settings
from engine.core.yamlsafe import MAX_YAML_DEPTH, load_yaml_text

BOMB_SIZES = (441, 492, 543)  # bytes; each 51 more is one more level of 9x expansion


def alias_bomb(size: int) -> str:
    """A preset whose schema_version is nested lists of aliases, 9 per level, padded to `size` bytes."""
    levels = 6 + BOMB_SIZES.index(size)
    lines = ["- &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"- &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    body = "name: Bomb\nschema_version:\n" + "\n".join(lines) + "\n"
    pad = size - len(body.encode()) - 2  # a comment line "#...\n" brings it to the exact size
    assert pad >= 0, f"{size} bytes is too small for {levels} levels"
    text = "#" + "x" * pad + "\n" + body
    assert len(text.encode()) == size
    return text


def expanded_leaves(node: Any, memo: dict[int, int] | None = None) -> int:
    """How many scalars the document expands to, counted over shared objects (never expanded)."""
    memo = {} if memo is None else memo
    if not isinstance(node, list):
        return 1
    if id(node) not in memo:
        memo[id(node)] = sum(expanded_leaves(child, memo) for child in node)
    return memo[id(node)]


def measure(call: Callable[[], Any]) -> tuple[BaseException | None, float, int]:
    """(the exception raised, seconds, peak bytes allocated) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the caller checks which
        error = exc
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return error, elapsed, peak


@pytest.mark.parametrize("size", BOMB_SIZES)
def test_the_fixture_is_a_real_bomb(size: int) -> None:
    # Plain SafeLoader accepts it and shares the lists; anything that walks or prints them explodes.
    data = yaml.safe_load(alias_bomb(size))
    assert expanded_leaves(data["schema_version"]) > 5_000_000


@pytest.mark.parametrize("size", BOMB_SIZES)
def test_preset_bomb_is_refused_fast_and_small(size: int, settings: Settings, tmp_path: Path) -> None:
    lib = PresetLibrary.from_settings(settings, load_taxonomy())
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(size), encoding="utf-8")
    error, elapsed, peak = measure(lambda: lib.read_file(path))
    assert isinstance(error, InvalidRequest)
    assert error.field == "preset" and "aliases" in error.reason and "not allowed" in error.reason
    assert "bomb.yaml" in str(error) and len(str(error)) < 300
    assert elapsed < 0.05, f"refusal took {elapsed * 1000:.1f} ms"
    assert peak < 5 * 1024 * 1024, f"refusal allocated {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("size", BOMB_SIZES)
def test_import_of_a_bomb_writes_nothing(size: int, settings: Settings, tmp_path: Path) -> None:
    lib = PresetLibrary.from_settings(settings, load_taxonomy())
    path = tmp_path / "shared.yaml"
    path.write_text(alias_bomb(size), encoding="utf-8")
    with pytest.raises(InvalidRequest, match="aliases"):
        lib.import_file(path)
    assert list(settings.presets_dir.iterdir()) == []


def test_taxonomy_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(alias_bomb(543).replace("name: Bomb\n", ""), encoding="utf-8")
    error, elapsed, peak = measure(lambda: load_taxonomy(path))
    assert isinstance(error, InvalidRequest) and error.field == "taxonomy" and "aliases" in error.reason
    assert elapsed < 0.05 and peak < 5 * 1024 * 1024


@pytest.mark.parametrize("text", ["a: &x 1\nb: 2\n", "a: 1\nb: *x\n", "base: &b {x: 1}\nother:\n  <<: *b\n"])
def test_any_anchor_or_alias_is_refused(text: str) -> None:
    # Even a harmless-looking single anchor: configs and presets never need them.
    with pytest.raises(InvalidRequest) as err:
        load_yaml_text(text, "config.yaml", "config")
    assert err.value.field == "config" and "line" in err.value.reason


def test_plain_yaml_still_loads() -> None:
    text = "name: ok\nlist: [1, 2, {k: 'has & and * inside'}]\nstar: '*not_an_alias'\n"
    assert load_yaml_text(text, "f", "config") == {"name": "ok", "list": [1, 2, {"k": "has & and * inside"}],
                                                  "star": "*not_an_alias"}


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    with pytest.raises(InvalidRequest, match=f"deeper than {MAX_YAML_DEPTH}"):
        load_yaml_text(deep, "config.yaml", "config")
    assert load_yaml_text("[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1), "f", "config") is not None


def test_error_messages_quote_only_a_prefix(settings: Settings, tmp_path: Path) -> None:
    lib = PresetLibrary.from_settings(settings, load_taxonomy())
    path = tmp_path / "long.yaml"
    path.write_text(f"schema_version: {'9' * 4000}\nname: Long\n", encoding="utf-8")
    with pytest.raises(InvalidRequest) as err:
        lib.read_file(path)
    assert err.value.field == "schema_version" and len(str(err.value)) < 300
    path.write_text(f"schema_version: {'9' * 100_000}\nname: Long\n", encoding="utf-8")
    with pytest.raises(InvalidRequest) as err:  # past Python's int-parsing limit: a message, not a traceback
        lib.read_file(path)
    assert err.value.field == "preset" and len(str(err.value)) < 300
    path.write_text(f"schema_version: 1\nname: Long\nsettings: {{{'k' * 100_000}: 1}}\n", encoding="utf-8")
    with pytest.raises(InvalidRequest) as err:
        lib.read_file(path)
    assert len(err.value.field) < 80 and len(str(err.value)) < 600
    huge: list[Any] = []
    for _ in range(30):  # shared 9x nesting: repr() of this would never finish
        huge = [huge] * 9
    assert len(shown(huge)) <= 60 and len(shown("z" * 10**6)) <= 60
