"""Built-in and user presets: validity, CRUD, import/export and refusal of bad input."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from engine.core.errors import StorageError
import yaml

from engine.core.errors import InvalidRequest, NotFound
from engine.core.pks import load_taxonomy
from engine.core.presets import (
    BUILTIN_PRESETS_DIR,
    MAX_PRESET_BYTES,
    Preset,
    PresetLibrary,
    check_name,
    slugify,
)
from engine.core.requests import GenerationRequest
from engine.core.settings import Settings

BUILTIN_FILES = sorted(BUILTIN_PRESETS_DIR.glob("*.yaml"))
SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@pytest.fixture
def lib(settings: Settings) -> PresetLibrary:
    return PresetLibrary.from_settings(settings)


def _user_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.presets_dir.iterdir())


def _mine(**overrides: Any) -> Preset:
    fields: dict[str, Any] = dict(
        description="My rooftop test", narrative="A cat naps on a sunny rooftop.", negative_prompt="blurry",
        tags={"camera.movement": "pan", "vfx.effects": ["falling_leaves", "light_rays"]},
        settings={"num_frames": 33, "fps": 16, "guidance": 4},
    )
    fields.update(overrides)
    return Preset.create(fields.pop("name", "Lazy Rooftop Cat"), **fields)


# ----------------------------------------------------------------------------- built-ins
def test_there_are_enough_builtins(lib: PresetLibrary) -> None:
    assert len(BUILTIN_FILES) >= 24
    builtins = [p for p in lib.list() if p.builtin]
    assert len(builtins) == len(BUILTIN_FILES)
    assert len({p.name.casefold() for p in builtins}) == len(builtins)


@pytest.mark.parametrize("path", BUILTIN_FILES, ids=[p.stem for p in BUILTIN_FILES])
def test_every_builtin_is_valid(lib: PresetLibrary, path: Path) -> None:
    tax = load_taxonomy()
    preset = lib.read_file(path, slug=path.stem, builtin=True)
    assert preset.slug == path.stem == slugify(preset.name)
    assert preset.description.strip() and preset.narrative.strip() and preset.negative_prompt.strip()
    assert len(preset.tags) >= 4
    assert dict(tax.validate_tags(preset.tags)) == dict(preset.tags)
    request = GenerationRequest(**preset.to_request_overrides())
    assert request.tags == preset.tags
    assert tax.compile_prompt(request.narrative, request.tags).endswith(preset.narrative.strip())
    # A preset that asks for intentional deformation must not fight it in its negative prompt.
    deformation = set(preset.tags.get("motion.deformation", ())) - {"none"}
    if deformation:
        assert not re.search(r"deform|distort|warp|melt", preset.negative_prompt, re.I), preset.slug


def test_builtins_are_read_only(lib: PresetLibrary) -> None:
    before = {p: p.read_bytes() for p in BUILTIN_FILES}
    slug = BUILTIN_FILES[0].stem
    with pytest.raises(InvalidRequest, match="read-only"):
        lib.delete(slug)
    with pytest.raises(InvalidRequest, match="read-only"):
        lib.rename(slug, "Something Else")
    builtin = lib.get(slug)
    with pytest.raises(InvalidRequest, match="built-in"):
        lib.save(builtin)
    with pytest.raises(InvalidRequest, match="built-in"):
        lib.save(Preset.create(builtin.name.upper(), narrative="same slug, different case"))
    assert {p: p.read_bytes() for p in BUILTIN_FILES} == before


def test_list_puts_builtins_first(lib: PresetLibrary) -> None:
    lib.save(_mine(name="AAA First Alphabetically"))
    presets = lib.list()
    assert presets[-1].name == "AAA First Alphabetically" and not presets[-1].builtin
    assert all(p.builtin for p in presets[:-1])


# -------------------------------------------------------------------------------- search
def test_search(lib: PresetLibrary) -> None:
    assert [p.slug for p in lib.search("sakuga")][0] == "combat-sakuga-dash"
    assert "cherry-blossom-confession" in {p.slug for p in lib.search("falling_petals")}  # tag id
    assert "cherry-blossom-confession" in {p.slug for p in lib.search("Falling PETALS")}  # tag label
    assert "isekai-magic-circle" in {p.slug for p in lib.search("vfx.effects=magic_circle")}
    assert {p.slug for p in lib.search("CHIBI comedy")} == {"chibi-comedy-reaction"}  # every word must match
    assert lib.search("") == lib.list()
    assert lib.search("no such thing anywhere") == ()
    lib.save(_mine())
    assert [p.slug for p in lib.search("rooftop cat")] == ["lazy-rooftop-cat"]


def test_search_ranks_name_matches_first(lib: PresetLibrary) -> None:
    hits = lib.search("rain")
    assert hits[0].slug == "rainy-night-city-romance"
    assert len(hits) > 1  # presets that only tag rain come after


# ---------------------------------------------------------------------------------- CRUD
def test_user_preset_crud(lib: PresetLibrary, settings: Settings) -> None:
    saved = lib.save(_mine())
    assert saved.slug == "lazy-rooftop-cat" and not saved.builtin
    assert _user_files(settings) == ["lazy-rooftop-cat.yaml"]  # no temp files left behind
    got = lib.get("lazy-rooftop-cat")
    assert got == saved
    assert got.tags["vfx.effects"] == ("light_rays", "falling_leaves")  # canonical taxonomy order
    assert got.settings == {"num_frames": 33, "fps": 16, "guidance": 4.0}

    updated = lib.save(_mine(description="second take"))
    assert lib.get(updated.slug).description == "second take"
    with pytest.raises(InvalidRequest, match="already exists"):
        lib.save(_mine(), overwrite=False)

    renamed = lib.rename("lazy-rooftop-cat", "Sleepy Rooftop Cat")
    assert renamed.slug == "sleepy-rooftop-cat" and renamed.narrative == saved.narrative
    assert _user_files(settings) == ["sleepy-rooftop-cat.yaml"]
    with pytest.raises(NotFound):
        lib.get("lazy-rooftop-cat")
    assert lib.rename("sleepy-rooftop-cat", "SLEEPY rooftop cat").name == "SLEEPY rooftop cat"  # same slug

    copy = lib.duplicate("sleepy-rooftop-cat", "Rooftop Cat Two")
    assert copy.tags == renamed.tags and copy.slug == "rooftop-cat-two"
    with pytest.raises(InvalidRequest, match="already exists"):
        lib.rename("rooftop-cat-two", "Sleepy Rooftop Cat")

    lib.delete("rooftop-cat-two")
    with pytest.raises(NotFound):
        lib.get("rooftop-cat-two")
    with pytest.raises(NotFound):
        lib.delete("rooftop-cat-two")
    assert _user_files(settings) == ["sleepy-rooftop-cat.yaml"]


def test_duplicate_builtin_makes_editable_copy(lib: PresetLibrary) -> None:
    copy = lib.duplicate("mecha-launch", "My Mecha Launch")
    assert not copy.builtin and copy.tags == lib.get("mecha-launch").tags
    lib.delete("my-mecha-launch")
    with pytest.raises(InvalidRequest, match="built-in"):
        lib.duplicate("mecha-launch", "Mecha Launch")


def test_save_refuses_invalid_tags_and_writes_nothing(lib: PresetLibrary, settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match="did you mean: whip_pan") as err:
        lib.save(_mine(tags={"camera.movement": "whippan"}))
    assert err.value.field == "tags.camera.movement"
    with pytest.raises(InvalidRequest, match="contradicts"):
        lib.save(_mine(tags={"camera.movement": "static", "vfx.effects": "screen_shake"}))
    assert _user_files(settings) == []


def test_get_refuses_malformed_slugs(lib: PresetLibrary) -> None:
    for slug in ("../etc/passwd", "/etc/passwd", "a/b", "UPPER", "", "a\x00b", "x.yaml"):
        with pytest.raises(InvalidRequest):
            lib.get(slug)
    with pytest.raises(NotFound):
        lib.get("not-a-preset")


def test_find_by_slug_or_name(lib: PresetLibrary) -> None:
    assert lib.find("mecha-launch").slug == "mecha-launch"
    assert lib.find("  mecha LAUNCH ").slug == "mecha-launch"
    lib.save(_mine())
    assert lib.find("Lazy Rooftop Cat").slug == "lazy-rooftop-cat"
    with pytest.raises(NotFound, match="did you mean: mecha-launch"):
        lib.find("mecha-lanch")
    with pytest.raises(InvalidRequest):
        lib.find(" ")


def test_to_request_overrides(lib: PresetLibrary) -> None:
    overrides = _mine().to_request_overrides()
    assert overrides["num_frames"] == 33 and overrides["guidance"] == 4.0
    req = GenerationRequest(**overrides)
    assert req.narrative == "A cat naps on a sunny rooftop." and req.negative_prompt == "blurry"
    style_only = Preset.create("Style Only", tags={"style.palette": "pastel"})
    assert "narrative" not in style_only.to_request_overrides()


# ------------------------------------------------------------------ names and slugs
@pytest.mark.parametrize(("name", "slug"), [
    ("Combat Sakuga Dash", "combat-sakuga-dash"),
    ("  90s OVA -- Cyberpunk!! ", "90s-ova-cyberpunk"),
    ("Café Crème", "cafe-creme"),
    ("桜の告白", None),
])
def test_slugify(name: str, slug: str | None) -> None:
    result = slugify(name)
    assert SLUG_RE.match(result)
    if slug is None:
        assert result.startswith("preset-") and result == slugify(name)
    else:
        assert result == slug


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "/etc/passwd", "C:\\x", "bad\x00name", "new\nline",
                                  "", "   ", "x" * 81, "..", "!!!/.."])
def test_unsafe_names_refused(lib: PresetLibrary, settings: Settings, name: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_name(name)
    assert err.value.field == "name"
    with pytest.raises(InvalidRequest):
        lib.save(Preset.create(name, narrative="n"))
    assert _user_files(settings) == []


def test_slug_must_match_name() -> None:
    with pytest.raises(InvalidRequest, match="is 'good-name'"):
        Preset("other", "Good Name")
    assert Preset("", "Good Name").slug == "good-name"


# -------------------------------------------------------------------- import / export
def test_export_import_round_trip(lib: PresetLibrary, settings: Settings, tmp_path: Path) -> None:
    saved = lib.save(_mine())
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    exported = lib.export(saved.slug, out_dir)
    assert exported == out_dir / "lazy-rooftop-cat.yaml"
    data = yaml.safe_load(exported.read_text(encoding="utf-8"))
    assert data["schema_version"] == 1 and data["name"] == "Lazy Rooftop Cat"
    lib.delete(saved.slug)
    imported = lib.import_file(exported)
    assert imported == saved
    with pytest.raises(InvalidRequest, match="already exists"):
        lib.import_file(exported)
    assert lib.import_file(exported, overwrite=True) == saved
    explicit = lib.export(saved.slug, tmp_path / "named.yml")
    assert explicit.name == "named.yml" and explicit.is_file()
    with pytest.raises(InvalidRequest, match="folder does not exist"):
        lib.export(saved.slug, tmp_path / "missing" / "x.yaml")


def test_exported_builtin_imports_under_new_name(lib: PresetLibrary, tmp_path: Path) -> None:
    path = lib.export("samurai-iaido-draw", tmp_path)
    with pytest.raises(InvalidRequest, match="built-in"):
        lib.import_file(path)  # same name as the built-in
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["name"] = "My Iaido"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    imported = lib.import_file(path)
    assert imported.slug == "my-iaido" and imported.tags == lib.get("samurai-iaido-draw").tags


def _good_file() -> dict[str, Any]:
    return {"schema_version": 1, "name": "Imported", "description": "d", "tags": {"camera.movement": "pan"},
            "narrative": "n", "negative_prompt": "", "settings": {"fps": 16}}


BAD_IMPORTS: list[tuple[str, Any, str, str]] = [
    ("unknown key", {"colour": "red"}, "colour", "unknown key 'colour'"),
    ("tags list", {"tags": ["camera.movement=pan"]}, "tags", "must map"),
    ("tag value int", {"tags": {"camera.movement": 3}}, "tags.camera.movement", "value id"),
    ("bad tag", {"tags": {"camera.movement": "whippan"}}, "tags.camera.movement", "did you mean: whip_pan"),
    ("unknown field", {"tags": {"camera.zoom": "in"}}, "tags", "unknown field 'camera.zoom'"),
    ("contradiction", {"tags": {"motion.intensity": "still", "vfx.effects": "speed_lines"}}, "tags.vfx.effects", "contradicts"),
    ("settings key", {"settings": {"sampler": "euler"}}, "settings.sampler", "not a preset setting"),
    ("settings range", {"settings": {"num_frames": 0}}, "settings.num_frames", "from 1"),
    ("settings type", {"settings": {"fps": "fast"}}, "settings.fps", "whole number"),
    ("settings bool", {"settings": {"steps": True}}, "settings.steps", "whole number"),
    ("settings not map", {"settings": [1, 2]}, "settings", "must map"),
    ("description type", {"description": ["a"]}, "description", "must be text"),
    ("narrative too long", {"narrative": "x" * 5000}, "narrative", "at most"),
    ("name missing", {"name": None}, "name", "is missing"),
    ("name empty", {"name": "  "}, "name", "non-empty"),
    ("name not text", {"name": 42}, "name", "non-empty"),
    ("name traversal", {"name": "../../etc/passwd"}, "name", "'/'"),
    ("name NUL", {"name": "evil\x00name"}, "name", "control characters"),
    ("name overlong", {"name": "n" * 200}, "name", "at most 80"),
    ("schema 2", {"schema_version": 2}, "schema_version", "unsupported"),
]


@pytest.mark.parametrize("case", BAD_IMPORTS, ids=[c[0] for c in BAD_IMPORTS])
def test_bad_import_refused_nothing_written(lib: PresetLibrary, settings: Settings, tmp_path: Path,
                                            case: tuple[str, Any, str, str]) -> None:
    _, change, field, message = case
    data = {**_good_file(), **change}
    data = {k: v for k, v in data.items() if not (k == "name" and v is None)}
    path = tmp_path / "incoming.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(InvalidRequest) as err:
        lib.import_file(path)
    assert err.value.field == field
    assert message in err.value.reason and "incoming.yaml" in err.value.reason
    assert _user_files(settings) == []


@pytest.mark.parametrize(("content", "message"), [
    (b"name: [unclosed\n", "not valid YAML at line"),
    (b"schema_version: 1\nname: A\nname: B\n", "duplicate key 'name'"),
    (b"- a\n- list\n", "must be a mapping"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"schema_version: 1\n", "is missing"),
    (b"name: x\n" + b"#" * (MAX_PRESET_BYTES + 1), "larger than"),
])
def test_malformed_files_refused(lib: PresetLibrary, settings: Settings, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    with pytest.raises(InvalidRequest, match=message):
        lib.import_file(path)
    assert _user_files(settings) == []


def test_import_missing_file(lib: PresetLibrary, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        lib.import_file(tmp_path / "nope.yaml")


def test_broken_user_file_is_skipped_not_fatal(lib: PresetLibrary, settings: Settings) -> None:
    lib.save(_mine())
    (settings.presets_dir / "broken.yaml").write_text("name: [", encoding="utf-8")
    (settings.presets_dir / "wrong-slug.yaml").write_text(yaml.safe_dump({**_good_file(), "name": "Other"}), encoding="utf-8")
    (settings.presets_dir / "mecha-launch.yaml").write_text(yaml.safe_dump({**_good_file(), "name": "Mecha Launch"}), encoding="utf-8")
    user = [p.slug for p in lib.list() if not p.builtin]
    assert user == ["lazy-rooftop-cat"]
    assert sorted(p.name for p, _ in lib.problems) == ["broken.yaml", "mecha-launch.yaml", "wrong-slug.yaml"]
    assert lib.get("mecha-launch").builtin  # the built-in wins the clash


def test_failed_write_keeps_old_file(lib: PresetLibrary, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    lib.save(_mine())
    before = (settings.presets_dir / "lazy-rooftop-cat.yaml").read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StorageError, match="cannot save the preset in .*disk full"):
        lib.save(_mine(description="never written"))
    assert (settings.presets_dir / "lazy-rooftop-cat.yaml").read_bytes() == before
    assert _user_files(settings) == ["lazy-rooftop-cat.yaml"]
