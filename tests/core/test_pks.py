"""The PKS taxonomy file, its validation, tag checks and the prompt compiler."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from engine.core.errors import InvalidRequest, NotFound
from engine.core.pks import DEFAULT_TAXONOMY_PATH, Taxonomy, load_taxonomy, parse_taxonomy

REQUIRED_FIELDS = {
    "style.school", "style.line_work", "style.palette", "style.lighting", "style.background", "style.era",
    "style.timing", "motion.performance", "motion.intensity", "motion.deformation", "camera.shot_size",
    "camera.angle", "camera.movement", "camera.lens", "vfx.effects",
}


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return load_taxonomy()


# ------------------------------------------------------------------------ the shipped taxonomy
def test_shipped_taxonomy_shape(tax: Taxonomy) -> None:
    assert [a.id for a in tax.axes] == ["style", "motion", "camera", "vfx"]
    assert tax.schema_version == 1 and tax.version.count(".") == 2
    assert len(tax.fields) >= 14
    assert tax.value_count >= 140
    assert REQUIRED_FIELDS <= set(tax.field_ids)
    assert tax.field("vfx.effects").multi and tax.field("vfx.effects").select == "multi"
    assert not tax.field("camera.movement").multi
    for f in tax.fields:
        assert f.id.startswith(f.axis + ".")
        assert len(set(f.value_ids)) == len(f.values) >= 2
        for v in f.values:
            assert v.label and v.description and v.phrase


def test_shipped_vocabulary_covers_production_terms(tax: Taxonomy) -> None:
    expect = {
        "style.timing": {"on_ones", "on_twos", "on_threes", "mixed"},
        "motion.deformation": {"none", "squash_and_stretch", "smear_frames", "multiples", "chibi_shift", "impact_frame"},
        "motion.intensity": {"subtle", "extreme"},
        "camera.movement": {"static", "pan", "tilt", "dolly_in", "dolly_out", "truck", "orbit", "whip_pan",
                            "dolly_zoom", "handheld_shake", "rack_focus"},
        "vfx.effects": {"speed_lines", "impact_flash", "anger_vein", "sweat_drop", "sparkles", "lens_flare",
                        "falling_petals", "rain", "snow", "aura", "energy_beam", "explosion", "screentone",
                        "motion_blur", "light_rays"},
    }
    for field_id, values in expect.items():
        assert values <= set(tax.field(field_id).value_ids), field_id
    assert tax.value("motion.deformation", "none").exclusive


def test_shipped_contradictions_are_real_pairs(tax: Taxonomy) -> None:
    assert len(tax.contradictions) >= 8
    for c in tax.contradictions:
        tax.value(c.a_field, c.a_value)
        tax.value(c.b_field, c.b_value)
        assert c.reason and (c.a_field != c.b_field or tax.field(c.a_field).multi)


def test_load_is_cached_per_path(tax: Taxonomy, tmp_path: Path) -> None:
    assert load_taxonomy() is tax
    assert load_taxonomy(DEFAULT_TAXONOMY_PATH) is tax
    copy_path = tmp_path / "copy.yaml"
    copy_path.write_text(DEFAULT_TAXONOMY_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    other = load_taxonomy(copy_path)
    assert other is not tax and other == tax
    assert load_taxonomy(str(copy_path)) is other


def test_lookups_and_not_found(tax: Taxonomy) -> None:
    assert tax.value("camera.movement", "whip_pan").label == "Whip pan"
    assert tax.axis("vfx").fields[0].id == "vfx.effects"
    with pytest.raises(NotFound, match="did you mean: camera.movement"):
        tax.field("camera.movment")
    with pytest.raises(NotFound, match="whip_pan"):
        tax.value("camera.movement", "whip-pan")
    assert ("Whip pan", "whip_pan") in tax.choices("camera.movement")


def test_describe_is_plain_data_for_the_ui(tax: Taxonomy) -> None:
    data = json.loads(json.dumps(tax.describe()))
    assert [a["id"] for a in data["axes"]] == ["style", "motion", "camera", "vfx"]
    fields = {f["id"]: f for a in data["axes"] for f in a["fields"]}
    assert fields["camera.movement"]["select"] == "single"
    assert ["Whip pan", "whip_pan"] in fields["camera.movement"]["choices"]
    assert len(data["contradictions"]) == len(tax.contradictions)
    assert sorted(data["prompt_order"]) == sorted(tax.field_ids)


# --------------------------------------------------------------------------- broken files
def _minimal() -> dict[str, Any]:
    def value(vid: str, **extra: Any) -> dict[str, Any]:
        return {"id": vid, "label": vid.title(), "description": f"{vid} desc", "phrase": f"{vid} phrase", **extra}

    return {
        "schema_version": 1,
        "taxonomy_version": "0.1.0",
        "axes": [
            {"id": "camera", "label": "Camera", "description": "d", "fields": [
                {"id": "camera.movement", "label": "Movement", "select": "single", "description": "d",
                 "values": [value("static"), value("pan"), value("whip_pan")]},
                {"id": "camera.shot_size", "label": "Shot size", "select": "single", "description": "d",
                 "values": [value("wide"), value("close_up")]},
            ]},
            {"id": "vfx", "label": "VFX", "description": "d", "fields": [
                {"id": "vfx.effects", "label": "Effects", "select": "multi", "description": "d",
                 "values": [value("none", exclusive=True), value("speed_lines"), value("rain")]},
            ]},
        ],
        "contradictions": [{"a": "camera.movement=static", "b": "vfx.effects=speed_lines", "reason": "r"}],
        "prompt_order": ["vfx.effects"],
    }


def _write(tmp_path: Path, data: Any, name: str = "tax.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutation that sets a dotted/indexed path such as 'axes.0.fields.0.select'."""
    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return mutate


_DELETE = object()
F0 = "taxonomy.axes[0].fields[0]"

BROKEN = [
    ("dup value", _set("axes.0.fields.0.values.2.id", "pan"),
     f"{F0}.values[2].id", "duplicate value id 'pan' in field camera.movement"),
    ("dup field", _set("axes.0.fields.1.id", "camera.movement"),
     "taxonomy.axes[0].fields[1].id", "duplicate field id 'camera.movement'"),
    ("dup axis", _set("axes.1.id", "camera"), "taxonomy.axes[1].id", "duplicate axis id 'camera'"),
    ("wrong prefix", _set("axes.0.fields.1.id", "vfx.shot_size"),
     "taxonomy.axes[0].fields[1].id", "must start with its axis id 'camera.'"),
    ("no dot", _set("axes.0.fields.1.id", "shot_size"), "taxonomy.axes[0].fields[1].id", "'<axis>.<name>'"),
    ("wrong select", _set("axes.0.fields.0.select", "several"), f"{F0}.select", "must be 'single' or 'multi'"),
    ("unknown value key", _set("axes.0.fields.0.values.0.colour", "red"), f"{F0}.values[0].colour", "unknown key 'colour'"),
    ("unknown field key", _set("axes.0.fields.0.widget", "x"), f"{F0}.widget", "unknown key 'widget'"),
    ("unknown top key", _set("extras", 1), "taxonomy.extras", "unknown key 'extras'"),
    ("missing phrase", _set("axes.0.fields.0.values.1.phrase", _DELETE), f"{F0}.values[1].phrase", "is missing"),
    ("empty phrase", _set("axes.0.fields.0.values.1.phrase", "   "), f"{F0}.values[1].phrase", "non-empty text"),
    ("bool label", _set("axes.0.fields.0.values.1.label", True), f"{F0}.values[1].label", "non-empty text"),
    ("bad value id", _set("axes.0.fields.0.values.1.id", "Whip Pan"), f"{F0}.values[1].id", "snake_case"),
    ("schema 2", _set("schema_version", 2), "taxonomy.schema_version", "unsupported schema version 2"),
    ("bad version", _set("taxonomy_version", 1.0), "taxonomy.taxonomy_version", "1.0.0"),
    ("no values", _set("axes.0.fields.0.values", []), f"{F0}.values", "must not be empty"),
    ("values not list", _set("axes.0.fields.0.values", "static"), f"{F0}.values", "must be a list"),
    ("contradiction bad value", _set("contradictions.0.b", "camera.movement=whippan"),
     "taxonomy.contradictions[0].b", "did you mean: whip_pan"),
    ("contradiction bad field", _set("contradictions.0.b", "vfx.effect=rain"),
     "taxonomy.contradictions[0].b", "unknown field 'vfx.effect'; did you mean: vfx.effects"),
    ("contradiction format", _set("contradictions.0.a", "static"), "taxonomy.contradictions[0].a", "'field=value'"),
    ("contradiction single field", _set("contradictions.0.b", "camera.movement=pan"),
     "taxonomy.contradictions[0]", "single-select"),
    ("contradiction self", _set("contradictions.0.b", "camera.movement=static"),
     "taxonomy.contradictions[0]", "cannot contradict itself"),
    ("contradiction no reason", _set("contradictions.0.reason", _DELETE), "taxonomy.contradictions[0].reason", "is missing"),
    ("prompt order unknown", _set("prompt_order", ["camera.zoom"]), "taxonomy.prompt_order[0]", "unknown field 'camera.zoom'"),
    ("prompt order twice", _set("prompt_order", ["vfx.effects", "vfx.effects"]), "taxonomy.prompt_order[1]", "listed twice"),
    ("exclusive on single", _set("axes.0.fields.0.values.0.exclusive", True), f"{F0}.values[0].exclusive", "only multi-select"),
    ("axes not mapping", _set("axes.0", "camera"), "taxonomy.axes[0]", "must be a mapping"),
]


def test_minimal_taxonomy_is_valid(tmp_path: Path) -> None:
    t = load_taxonomy(_write(tmp_path, _minimal()))
    assert t.field_ids == ("camera.movement", "camera.shot_size", "vfx.effects")


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_taxonomy_rejected_with_location(tmp_path: Path, case: tuple[Any, ...]) -> None:
    _, mutate, field, message = case
    data = copy.deepcopy(_minimal())
    mutate(data)
    with pytest.raises(InvalidRequest) as err:
        load_taxonomy(_write(tmp_path, data))
    assert err.value.field == field
    assert message in err.value.reason


def test_duplicate_contradiction_rejected() -> None:
    data = _minimal()
    data["contradictions"].append({"a": "vfx.effects=speed_lines", "b": "camera.movement=static", "reason": "again"})
    with pytest.raises(InvalidRequest, match="duplicate contradiction") as err:
        parse_taxonomy(data)
    assert err.value.field == "taxonomy.contradictions[1]"


@pytest.mark.parametrize(("text", "message"), [
    ("schema_version: 1\naxes: [\n", "not valid YAML at line"),
    ("schema_version: 1\nschema_version: 1\n", "duplicate key 'schema_version'"),
    ("- just\n- a list\n", "must be a mapping"),
    ("", "must be a mapping"),
])
def test_unparseable_taxonomy_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidRequest, match=message):
        load_taxonomy(path)


def test_missing_taxonomy_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not found"):
        load_taxonomy(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------- tag checks
def test_validate_tags_canonical(tax: Taxonomy) -> None:
    a = tax.validate_tags({"vfx.effects": ["rain", "speed_lines"], "camera.movement": "pan"})
    b = tax.validate_tags({"camera.movement": ("pan",), "vfx.effects": ("speed_lines", "rain")})
    assert dict(a) == dict(b)
    assert list(a) == ["camera.movement", "vfx.effects"]
    order = tax.field("vfx.effects").value_ids
    assert list(a["vfx.effects"]) == sorted(a["vfx.effects"], key=order.index)
    assert dict(tax.validate_tags(None)) == {}
    assert dict(tax.validate_tags({"vfx.effects": []})) == {}


def test_unknown_value_suggests_closest(tax: Taxonomy) -> None:
    with pytest.raises(InvalidRequest) as err:
        tax.validate_tags({"camera.movement": "whippan"})
    assert err.value.field == "tags.camera.movement"
    assert "unknown value 'whippan' for camera.movement; did you mean: whip_pan" in err.value.reason
    assert "(valid: static, pan," in err.value.reason


@pytest.mark.parametrize("given", ["Whip pan", "whip-pan", "WHIP PAN"])
def test_label_like_spellings_point_at_the_id(tax: Taxonomy, given: str) -> None:
    with pytest.raises(InvalidRequest, match="did you mean: whip_pan"):
        tax.validate_tags({"camera.movement": given})


def test_hopeless_value_lists_every_valid_id(tax: Taxonomy) -> None:
    with pytest.raises(InvalidRequest) as err:
        tax.validate_tags({"vfx.effects": ["qqqq"]})
    assert "did you mean" not in err.value.reason
    listed = err.value.reason.split("(valid: ")[1].rstrip(")").split(", ")
    assert listed == list(tax.field("vfx.effects").value_ids)  # all of them, never cut at "..."


@pytest.mark.parametrize(("field_id", "suggestion"), [("camera.movment", "camera.movement"), ("movement", "camera.movement"),
                                                      ("vfx.effect", "vfx.effects"), ("style.colour", "style.palette"),
                                                      ("colour", "style.palette"), ("Depth of field", "camera.depth_of_field")])
def test_unknown_field_suggests_closest(tax: Taxonomy, field_id: str, suggestion: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        tax.validate_tags({field_id: "pan"})
    assert err.value.field == "tags"
    assert f"unknown field '{field_id}'" in err.value.reason and f"did you mean: {suggestion}" in err.value.reason


def test_single_select_takes_one_value(tax: Taxonomy) -> None:
    with pytest.raises(InvalidRequest, match="takes one value, got 2: static, whip_pan") as err:
        tax.validate_tags({"camera.movement": ["static", "whip_pan"]})
    assert err.value.field == "tags.camera.movement"


def test_duplicate_values_refused(tax: Taxonomy) -> None:
    with pytest.raises(InvalidRequest, match="'rain' is given twice"):
        tax.validate_tags({"vfx.effects": ["rain", "snow", "rain"]})


def test_exclusive_value_stands_alone(tax: Taxonomy) -> None:
    assert tax.validate_tags({"motion.deformation": ["none"]})["motion.deformation"] == ("none",)
    with pytest.raises(InvalidRequest, match="'none' cannot be combined"):
        tax.validate_tags({"motion.deformation": ["smear_frames", "none"]})


def test_wrong_types_refused(tax: Taxonomy) -> None:
    with pytest.raises(InvalidRequest):
        tax.validate_tags({"camera.movement": 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidRequest):
        tax.validate_tags(["camera.movement=pan"])  # type: ignore[arg-type]


def test_every_declared_contradiction_is_enforced(tax: Taxonomy) -> None:
    for c in tax.contradictions:
        tags: dict[str, Any] = {c.a_field: c.a_value, c.b_field: c.b_value}
        if c.a_field == c.b_field:
            tags = {c.a_field: [c.a_value, c.b_value]}
        with pytest.raises(InvalidRequest) as err:  # a soft one is refused only where a clip is made
            tax.check_soft(tags, anyway=False) if c.soft else tax.validate_tags(tags)
        assert c.a in err.value.reason and c.b in err.value.reason and c.reason in err.value.reason
        assert tax.find_contradictions(tags) == (c,)
        if c.soft:
            tax.validate_tags(tags)
            tax.check_soft(tags, anyway=True)
        # Each side alone is fine.
        tax.validate_tags({c.a_field: c.a_value})
        tax.validate_tags({c.b_field: c.b_value})


def test_static_camera_and_screen_shake_named(tax: Taxonomy) -> None:
    with pytest.raises(InvalidRequest) as err:
        tax.validate_tags({"camera.movement": "static", "vfx.effects": ["rain", "screen_shake"]})
    assert err.value.field == "tags.vfx.effects"
    assert err.value.reason.startswith("camera.movement=static contradicts vfx.effects=screen_shake: ")


# --------------------------------------------------------------------------------- compiler
def test_compile_exact_format(tax: Taxonomy) -> None:
    tags = {"vfx.effects": ["rain", "speed_lines"], "camera.movement": "whip_pan", "style.school": "cel_90s",
            "motion.intensity": "energetic"}
    phrase = tax.value
    expected = ", ".join([
        phrase("style.school", "cel_90s").phrase, phrase("motion.intensity", "energetic").phrase,
        phrase("camera.movement", "whip_pan").phrase, phrase("vfx.effects", "speed_lines").phrase,
        phrase("vfx.effects", "rain").phrase,
    ]) + ". A girl runs through the rain."
    assert tax.compile_prompt("  A girl runs through the rain.\n", tags) == expected


def test_compile_is_deterministic(tax: Taxonomy) -> None:
    a = {"style.school": "shoujo_sparkle", "vfx.effects": ["sparkles", "falling_petals", "bloom"],
         "camera.shot_size": "close_up", "motion.secondary": ["hair_sway", "blinking"]}
    b = {k: (list(reversed(v)) if isinstance(v, list) else v) for k, v in reversed(list(a.items()))}
    assert tax.compile_prompt("x", a) == tax.compile_prompt("x", b)
    assert tax.tag_keys(a) == tax.tag_keys(b)


def test_compile_axis_order(tax: Taxonomy) -> None:
    tags = {"vfx.effects": "rain", "camera.angle": "low_angle", "motion.performance": "walk_cycle", "style.palette": "muted"}
    prompt = tax.compile_prompt("n", tags)
    positions = [prompt.index(tax.value(f, v).phrase) for f, v in
                 [("style.palette", "muted"), ("motion.performance", "walk_cycle"), ("camera.angle", "low_angle"), ("vfx.effects", "rain")]]
    assert positions == sorted(positions)
    assert prompt.endswith(". n")


def test_compile_edges(tax: Taxonomy) -> None:
    assert tax.compile_prompt("  just words ", {}) == "just words"
    assert tax.compile_prompt("", {"camera.movement": "pan"}) == tax.value("camera.movement", "pan").phrase + "."
    with pytest.raises(InvalidRequest, match="whip_pan"):
        tax.compile_prompt("x", {"camera.movement": "whippan"})
    with pytest.raises(InvalidRequest):
        tax.compile_prompt("x", {"motion.intensity": "still", "vfx.effects": "speed_lines"})


def test_prompt_fields_follow_prompt_order_then_axis_order(tmp_path: Path) -> None:
    t = load_taxonomy(_write(tmp_path, _minimal()))
    assert [f.id for f in t.prompt_fields] == ["vfx.effects", "camera.movement", "camera.shot_size"]
    prompt = t.compile_prompt("n", {"camera.shot_size": "wide", "vfx.effects": "rain", "camera.movement": "pan"})
    assert prompt == "rain phrase, pan phrase, wide phrase. n"


def test_shipped_prompt_fields_cover_every_field_once(tax: Taxonomy) -> None:
    ids = [f.id for f in tax.prompt_fields]
    assert sorted(ids) == sorted(tax.field_ids) and len(ids) == len(set(ids))
    assert ids[: len(tax.prompt_order)] == list(tax.prompt_order)


def test_describe_tags(tax: Taxonomy) -> None:
    lines = tax.describe_tags({"vfx.effects": ["snow", "rain"], "camera.movement": "whip_pan"})
    assert lines == ["Camera · Movement: Whip pan", "VFX · Effects: Rain, Snow"]


def test_engine_pks_modules_do_not_import_gradio() -> None:
    root = Path(__file__).resolve().parents[2] / "engine" / "core"
    for name in ("pks.py", "presets.py"):
        assert "gradio" not in (root / name).read_text(encoding="utf-8")


def test_a_soft_contradiction_is_valid_and_asks_for_generate_anyway(tax: Taxonomy) -> None:
    soft = [c for c in tax.contradictions if c.soft]
    assert soft and any(not c.soft for c in tax.contradictions)
    retro = {"style.era": "seventies", "style.background": "cg_3d"}
    assert dict(tax.validate_tags(retro)) == {"style.background": ("cg_3d",), "style.era": ("seventies",)}
    with pytest.raises(InvalidRequest) as info:
        tax.check_soft(retro, anyway=False)
    assert info.value.field == "tags.style.background" and "rarely goes with" in info.value.reason
    tax.check_soft(retro, anyway=True)
    assert tax.value("style.background", "cg_3d").phrase in tax.compile_prompt("a train", retro)
    with pytest.raises(InvalidRequest, match="contradicts"):  # a hard one stays refused, anyway or not
        tax.validate_tags({"camera.movement": "static", "vfx.effects": ["screen_shake"]})


def test_soft_must_be_true_or_false(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_TAXONOMY_PATH.read_text(encoding="utf-8"))
    data["contradictions"][0]["soft"] = "yes"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(InvalidRequest) as info:
        load_taxonomy(path)
    assert info.value.field == "taxonomy.contradictions[0].soft" and "true or false" in info.value.reason
