"""Every declared request setting reaches every surface: the CLI, the `/generate` API and the
Create form take it, it survives history -> Reuse -> `--from` unchanged, and a bad value is refused
with the field's label. A setting added to GenerationRequest without its way onto a surface (or
without saying it stays off one, `form=False` / `api=False`) fails here, naming it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.adapters import (FIELD_LABELS, field_label, form_from_request, form_from_values, form_to_values,
                          request_from_form, ui_message)
from app.tabs.create_api import api_settings, build_request, parameter_names
from engine.cli import _request_from_args, build_parser
from engine.core.errors import InvalidRequest
from engine.core.export import write_mp4
from engine.core.pks import load_taxonomy
from engine.core.request_schema import Setting, declared
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings
from engine.generate_flags import setting_flags
from engine.runner import SAME_FIELDS

SETTINGS: list[tuple[dataclasses.Field[Any], Setting]] = list(declared(GenerationRequest))
NAMES = [f.name for f, _ in SETTINGS]
DEFAULTS: dict[str, Any] = {
    f.name: f.default if f.default is not dataclasses.MISSING else
    (f.default_factory() if f.default_factory is not dataclasses.MISSING else None) for f, _ in SETTINGS}
SPEC = {f.name: spec for f, spec in SETTINGS}
# Every setting at its declared example: one request that sets them all (the examples fit together).
FULL = GenerationRequest(**{f.name: spec.example for f, spec in SETTINGS})


def _differences(got: GenerationRequest, want: GenerationRequest) -> list[str]:
    a, b = got.to_dict(), want.to_dict()
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in NAMES if a.get(k) != b.get(k)]


def _without(surface: str) -> GenerationRequest:
    """FULL with the settings a surface does not take (declared so) at their defaults."""
    off: dict[str, Any] = {name: DEFAULTS[name] for name in NAMES if not getattr(SPEC[name], surface)}
    return dataclasses.replace(FULL, **off)


# -- the surfaces, spelled as a user spells them ----------------------------------------------
def _argv(request: GenerationRequest) -> list[str]:
    """The `generate` command line that asks for `request`."""
    argv = ["generate"]
    for name, spec in setting_flags():
        value, flag = getattr(request, name), spec.flag
        assert flag is not None
        if value == DEFAULTS[name] and name != "model":
            continue
        if spec.kind == "tags":
            argv += [a for k, vs in value.items() for v in vs for a in ("--tag", f"{k}={v}")]
        elif spec.kind == "adapters":
            argv += [a for ref in value for a in ("--adapter", f"{ref.path}:{ref.strength}")]
        elif name == "cache":
            argv += [flag, value if request.cache_threshold is None else f"{value}:{request.cache_threshold}"]
        elif spec.kind == "bool":
            argv += [flag if value else "--no-" + flag[2:]]
        else:
            argv += [flag, str(value)]
    return argv


def _from_cli(argv: list[str]) -> GenerationRequest:
    args = build_parser().parse_args(argv)
    request: GenerationRequest = _request_from_args(args, Settings(), studio=None)
    return request


def _api_values(request: GenerationRequest) -> dict[str, Any]:
    """`/generate`'s parameters as a gradio_client caller sends them (numbers arrive as floats)."""
    values: dict[str, Any] = {}
    for name, (field, spec) in api_settings().items():
        value = getattr(request, field)
        if spec.kind == "tags":
            value = {k: list(v) for k, v in value.items()}
        elif spec.kind == "adapters":
            value = [f"{ref.path}:{ref.strength}" for ref in value]
        elif field == "cache" and value is not None and request.cache_threshold is not None:
            value = f"{value}:{request.cache_threshold}"
        elif spec.kind == "bool" and DEFAULTS[field] is None:  # on, off or empty; "anyway" is a tick box
            value = "" if value is None else ("on" if value else "off")
        elif spec.kind == "int" and value is not None:
            value = float(value)
        values[name] = value
    return values


def _from_api(values: dict[str, Any]) -> GenerationRequest:
    services = SimpleNamespace(presets=None, default_model="preview")
    return build_request(services, values)  # type: ignore[arg-type]


def _through_form(request: GenerationRequest) -> GenerationRequest:
    """Fill the Create form from `request` (Reuse), read its components back and press Generate."""
    tax = load_taxonomy()
    values = form_to_values(form_from_request(request), tax)
    return request_from_form(form_from_values(values, tax))


# -- the declaration itself -------------------------------------------------------------------------
def test_every_setting_is_declared_with_a_label_and_an_example_that_is_not_its_default() -> None:
    undeclared = [f.name for f in dataclasses.fields(GenerationRequest) if f.name not in NAMES]
    assert not undeclared, f"declare these with setting(...): {undeclared}"
    for name, spec in SPEC.items():
        assert spec.label and FIELD_LABELS[name] == spec.label, name
        assert spec.example is not None and spec.example != DEFAULTS[name], f"{name}: give it an example"
        assert spec.flag or spec.carried_by in SPEC, f"{name}: give it a --flag (or say which field carries it)"
    assert set(SAME_FIELDS) == {n for n, s in SPEC.items() if s.same}
    assert set(FULL.to_dict()) == {n for n, s in SPEC.items() if s.recorded}


# -- each surface takes every setting -----------------------------------------------------------------
def test_the_command_line_takes_every_setting() -> None:
    assert _differences(_from_cli(_argv(FULL)), FULL) == []


def test_the_api_takes_every_setting_it_declares() -> None:
    assert "preset" in parameter_names() and set(api_settings()) <= set(parameter_names())
    assert _differences(_from_api(_api_values(FULL)), _without("api")) == []


def test_the_form_takes_every_setting_it_declares() -> None:
    assert _differences(_through_form(FULL), _without("form")) == []


def test_history_then_reuse_then_from_keeps_every_setting(tmp_path: Path) -> None:
    stored = GenerationRequest.from_json(FULL.to_json())  # what the history row holds
    assert _differences(stored, FULL) == []
    reused = _through_form(stored)  # "Reuse settings", then Generate
    clip = write_mp4(np.zeros((2, 16, 16, 3), np.uint8), 8, tmp_path / "clip.mp4", {"request": reused.to_dict()})
    again = _from_cli(["generate", "--from", str(clip), "--allow-local-models"])
    assert _differences(again, _without("form")) == []


# -- and each refuses a bad value, naming the field as the form labels it ----------------------------
def _bad(name: str, spec: Setting) -> Any:
    if spec.kind in ("int", "float"):
        return (spec.high if spec.high is not None else 1000) + 1
    if spec.kind == "choice":
        return "nonsense"
    if spec.kind == "bool":
        return "maybe"
    if spec.kind == "tags":
        return "camera.movement"
    if spec.kind == "adapters":
        return ({"path": "style.safetensors", "strength": 9.0},)
    return "x" * (spec.max_chars + 1) if spec.max_chars else ""


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_value_is_refused_with_the_label(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        dataclasses.replace(FULL, **{name: _bad(name, SPEC[name])})
    field = caught.value.field
    assert field.split(".")[0] == name
    label = SPEC[name].label if field == name else field_label(field)
    assert ui_message(caught.value).startswith(f"{label}: "), ui_message(caught.value)


@pytest.mark.parametrize("name", [n for n, s in SPEC.items() if s.kind in ("int", "float") and s.flag])
def test_a_number_out_of_range_is_refused_by_the_cli_and_the_api(name: str) -> None:
    spec = SPEC[name]
    assert spec.flag is not None and spec.high is not None
    value = int(spec.high) + 1 if spec.kind == "int" else spec.high + 1
    with pytest.raises(InvalidRequest, match=name):
        _from_cli(["generate", "--model", "preview", "--narrative", "a cat", spec.flag, str(value)])
    if spec.api:
        with pytest.raises(InvalidRequest, match=name):
            _from_api({"narrative": "a cat", "model": "preview", **_api_name_of(name, float(value))})


def _api_name_of(name: str, value: Any) -> dict[str, Any]:
    return {api: value for api, (field, _) in api_settings().items() if field == name}
