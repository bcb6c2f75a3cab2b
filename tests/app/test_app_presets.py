"""Presets and adapters through the studio's API (gradio_client against a launched app).

Presets: save the Create tab's settings as a preset, find it by search, preview and use it,
rename, duplicate, delete; built-ins are refused; a bad import is refused with nothing written;
export then import gives the same preset. Adapters: a tiny HydraLoRA for the preview model is
listed for it (and only for it), generates through the UI, and comes back with "Reuse settings".
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from engine.core.requests import AdapterRef  # noqa: E402

from support.app import make_settings, small_form, value, tiny_hydralora, serve  # noqa: E402

NEGATIVE = "blurry, off-model faces"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, Client]]:
    with serve(make_settings(tmp_path_factory.mktemp("presets"), preview_folder)) as (services, _, client):
        yield services, client


def form_values(services: StudioServices, form: adapters.FormValues) -> list[Any]:
    return adapters.form_to_values(form, services.taxonomy)


def save(client: Client, services: StudioServices, name: str, form: adapters.FormValues, *, description: str = "",
         current: str = "") -> tuple[Any, ...]:
    return client.predict(name, description, current, *form_values(services, form), api_name="/save_preset")


def names(table: dict[str, Any]) -> list[str]:
    """The presets' names in a table (its first cell is "**Name**\\n_built-in_" or "_yours_")."""
    return [row[0].split("\n")[0].strip("*") for row in table["data"]]


def user_files(services: StudioServices) -> list[str]:
    return sorted(p.name for p in services.settings.presets_dir.iterdir())


def error_of(call: Any) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return str(caught.value)


def test_save_find_use_rename_duplicate_delete(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    tax, library = services.taxonomy, services.presets
    form = small_form(negative_prompt=NEGATIVE)

    # Save as preset: the form's tags, narrative, negative prompt, model and settings.
    dropdown, badge = save(client, services, "Rooftop Dusk Run", form, description="A test of saving from Create.")
    assert dropdown["value"] == "rooftop-dusk-run" and ["Rooftop Dusk Run (yours)", "rooftop-dusk-run"] in \
        [list(c) for c in dropdown["choices"]]
    assert "Rooftop Dusk Run" in badge and "modified" not in badge
    saved = library.get("rooftop-dusk-run")
    assert (saved.narrative, saved.negative_prompt, saved.builtin) == (form.narrative, NEGATIVE, False)
    assert {k: tuple(v) for k, v in saved.tags.items()} == {k: tuple(v) for k, v in form.tags.items()}
    assert dict(saved.settings) == {"model": "preview", "width": 64, "height": 64, "num_frames": 9, "fps": 8,
                                    "steps": 2, "guidance": 5.0, "seed": 1234}

    # Bad names are refused naming the field; nothing more is written.
    before = user_files(services)
    assert error_of(lambda: save(client, services, "  ", form)).startswith("Preset name:")
    assert "must not contain" in error_of(lambda: save(client, services, "a/b", form))
    assert "built-in" in error_of(lambda: save(client, services, "Combat Sakuga Dash", form))
    assert "already one of your presets" in error_of(lambda: save(client, services, "rooftop dusk run", form))
    assert error_of(lambda: save(client, services, "Too wide", replace(form, width=70))).startswith("Width:")
    assert user_files(services) == before
    # ...but saving under the name of the preset the form started from updates it.
    save(client, services, "Rooftop Dusk Run", replace(form, steps=3), current="rooftop-dusk-run")
    assert library.get("rooftop-dusk-run").settings["steps"] == 3

    # Search by name, description and tag label; every word must match.
    for query in ("rooftop dusk", "saving from create", "whip pan speed lines"):
        table, count = client.predict(query, api_name="/presets")
        assert "Rooftop Dusk Run" in names(table), query
    table, count = client.predict("rooftop nosuchword", api_name="/presets")
    assert names(table) == [] and "No preset matches" in count
    table, _ = client.predict("", api_name="/presets")
    assert len(table["data"]) == len(library.list()) and table["data"][0][0].endswith("_yours_")  # on top

    # Preview: details and the compiled prompt; a user preset can be renamed and deleted.
    # (Buttons are layout to the API client; the browser test checks which are enabled.)
    summary, details, compiled, name, export = client.predict("rooftop-dusk-run", api_name="/preset_details")
    assert compiled == tax.compile_prompt(saved.narrative, saved.tags) and "fast whip pan" in compiled
    assert "### Rooftop Dusk Run" in summary and "your preset" in summary and name == "Rooftop Dusk Run"
    assert "Camera · Movement: Whip pan" in details and "Steps 3" in details
    assert Path(value(export)).is_file()

    # Use in Create: the form is the preset's (tags, narrative, settings) and the tab switches.
    other = adapters.FormValues(model="preview", narrative="something else", steps=4)
    out = client.predict("rooftop-dusk-run", *form_values(services, other), api_name="/use_preset")
    keys = adapters.form_keys(tax)
    assert value(out[0]) == "rooftop-dusk-run" and "Preset **Rooftop Dusk Run**" in out[-1]  # the badge
    used = adapters.form_from_values([value(v) for v in out[1: 1 + len(keys)]], tax)
    assert (used.narrative, used.negative_prompt, used.steps, used.seed, used.random_seed) == \
        (form.narrative, NEGATIVE, 3, 1234, False)
    assert {k: tuple(v) for k, v in used.tags.items()} == {k: tuple(v) for k, v in form.tags.items()}

    # Rename, duplicate (a free "(copy)" name when none is typed), delete after asking.
    table, _, selected = client.predict("rooftop-dusk-run", "Rooftop Dusk Sprint", "", api_name="/rename_preset")
    assert selected == "rooftop-dusk-sprint" and "Rooftop Dusk Sprint" in names(table)
    assert not library.exists("rooftop-dusk-run") and library.get("rooftop-dusk-sprint").settings["steps"] == 3
    assert error_of(lambda: client.predict("rooftop-dusk-sprint", "", "", api_name="/rename_preset")) \
        .startswith("Preset name:")
    _, _, copy = client.predict("rooftop-dusk-sprint", "", "", api_name="/duplicate_preset")
    assert copy == "rooftop-dusk-sprint-copy" and library.get(copy).name == "Rooftop Dusk Sprint (copy)"
    _, _, copy2 = client.predict("rooftop-dusk-sprint", "Rooftop Dusk Sprint", "", api_name="/duplicate_preset")
    assert copy2 == "rooftop-dusk-sprint-copy-2"
    question = client.predict(copy2, api_name="/delete_preset_ask")
    assert "Rooftop Dusk Sprint (copy 2)" in question and library.exists(copy2)
    table, _, selected = client.predict(copy2, "", api_name="/delete_preset")
    assert selected == "" and not library.exists(copy2) and "Rooftop Dusk Sprint (copy 2)" not in names(table)


def test_builtin_presets_are_read_only(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    library = services.presets
    builtin = library.get("combat-sakuga-dash")
    summary, *_ = client.predict(builtin.slug, api_name="/preset_details")
    assert "built-in, read-only" in summary
    assert "read-only" in error_of(lambda: client.predict(builtin.slug, api_name="/delete_preset_ask"))
    assert "read-only" in error_of(lambda: client.predict(builtin.slug, "", api_name="/delete_preset"))
    assert "read-only" in error_of(lambda: client.predict(builtin.slug, "Mine now", "", api_name="/rename_preset"))
    assert library.get("combat-sakuga-dash") == builtin and (library.builtin_dir / "combat-sakuga-dash.yaml").is_file()
    # Duplicating a built-in is how one makes it one's own.
    _, _, copy = client.predict(builtin.slug, "My Sakuga Dash", "", api_name="/duplicate_preset")
    assert not library.get(copy).builtin and library.get(copy).tags == builtin.tags


def test_bad_import_is_refused_and_export_round_trips(served: tuple[StudioServices, Client], tmp_path: Path) -> None:
    services, client = served
    library = services.presets
    save(client, services, "Export Me", small_form(negative_prompt=NEGATIVE), description="round trip")
    before = user_files(services)

    bad = {
        "unknown-tag.yaml": "schema_version: 1\nname: Bad Tag\ntags: {camera.movement: moonwalk}\n",
        "not-yaml.yaml": "name: [unclosed\n",
        "wrong-key.yaml": "schema_version: 1\nname: Wrong Key\ncolour: red\n",
        "builtin-name.yaml": "schema_version: 1\nname: Combat Sakuga Dash\n",
    }
    for file_name, text in bad.items():
        path = tmp_path / file_name
        path.write_text(text, encoding="utf-8")
        message = error_of(lambda path=path: client.predict(handle_file(str(path)), "", api_name="/import_preset"))
        assert message.startswith("Import refused"), message
    assert "moonwalk" in error_of(lambda: client.predict(handle_file(str(tmp_path / "unknown-tag.yaml")), "",
                                                         api_name="/import_preset"))
    assert "colour" in error_of(lambda: client.predict(handle_file(str(tmp_path / "wrong-key.yaml")), "",
                                                       api_name="/import_preset"))
    assert user_files(services) == before  # nothing written

    # Export, delete, import the exported file: the same preset again.
    original = library.get("export-me")
    export = client.predict("export-me", api_name="/preset_details")[4]
    exported = Path(value(export))
    assert yaml.safe_load(exported.read_text(encoding="utf-8"))["name"] == "Export Me"
    client.predict("export-me", "", api_name="/delete_preset")
    assert not library.exists("export-me")
    table, _, selected, upload = client.predict(handle_file(str(exported)), "", api_name="/import_preset")
    assert selected == "export-me" and "Export Me" in names(table) and library.get("export-me") == original
    assert upload is None  # the upload box is emptied
    # Importing it a second time is refused: the name is taken.
    assert "already exists" in error_of(lambda: client.predict(handle_file(str(exported)), "",
                                                               api_name="/import_preset"))


def test_adapter_is_listed_for_its_model_generates_and_is_reused(served: tuple[StudioServices, Client]) -> None:
    services, client = served
    history, tax = services.studio.history, services.taxonomy
    folder = tiny_hydralora(services.settings.models_dir / "adapters" / "tiny-hydra")

    note, *slots = client.predict("preview", api_name="/list_adapters")
    choices = [tuple(c) for c in slots[0]["choices"]]
    assert note == "1 adapter fits Preview." and len(slots) == adapters.MAX_ADAPTERS
    assert choices == [("None", ""), ("tiny-hydra · HydraLoRA", str(folder))]
    for other in ("wan2.1-t2v-1.3b", "hunyuanvideo"):  # another size, another family
        note, *slots = client.predict(other, api_name="/list_adapters")
        assert [tuple(c) for c in slots[0]["choices"]] == [("None", "")] and note.startswith("No adapter fits")

    form = replace(small_form(), adapters=(AdapterRef(str(folder), 0.8),))
    # A model it does not fit is refused before anything is queued.
    refused = error_of(lambda: client.predict(*form_values(services, replace(form, model="hunyuanvideo", width=None,
                                                                            height=None, num_frames=None)),
                                              api_name="/submit"))
    assert refused.startswith("Adapter:") and "HunyuanVideo" in refused
    job_id, status = client.predict(*form_values(services, form), api_name="/submit")
    video, clip_settings, _, run_status = client.predict(job_id, api_name="/run_job")
    record = history.get(job_id)
    assert record.status == "done" and Path(video).is_file() and "done" in run_status
    assert record.request.adapters == (AdapterRef(str(folder), 0.8, "auto"),)
    assert "tiny-hydra" in clip_settings and "strength 0.8" in clip_settings

    reused = [value(v) for v in client.predict(str(job_id), api_name="/reuse")]
    keys = adapters.form_keys(tax)
    back = adapters.form_from_values(reused[: len(keys)], tax)
    assert back.adapters == (AdapterRef(str(folder), 0.8),)


def test_catalog_finds_adapters_folder_training_runs_and_runs_in_the_history(settings: Any, tmp_path: Path) -> None:
    """No server: where the Create tab's adapters come from, and how they are named."""
    import shutil

    from app.services.context import AdapterCatalog
    from engine.core.registry import REGISTRY
    from engine.core.requests import GenerationRequest
    from engine.studio import Studio

    hydra = tiny_hydralora(tmp_path / "hydra")
    models, training = AdapterCatalog(settings).roots()
    shutil.copytree(hydra, models / "styles" / "ink-wash")
    (models / "loose").mkdir(parents=True)
    (models / "broken.safetensors").write_bytes(b"not a safetensors file")
    shutil.copytree(hydra, training / "run-a" / "adapter")
    step = training / "run-a" / "checkpoints" / "step-000250"
    shutil.copytree(hydra, step / "adapter")
    (step / "trainable.safetensors").write_bytes(b"raw tensors")  # a checkpoint's resume state: no adapter
    (step / "state.pt").write_bytes(b"")
    elsewhere = tmp_path / "runs" / "run-b" / "checkpoints" / "step-000010" / "adapter"
    shutil.copytree(hydra, elsewhere)
    shutil.copytree(hydra, tmp_path / "runs" / "run-b" / "adapter")

    studio = Studio(settings)
    try:
        # A validation sample of run-b, recorded as the trainer records them, points the catalog at that run.
        studio.history.enqueue(GenerationRequest(narrative="validation sample", model="preview"),
                               compiled_prompt="validation sample", source="training", checkpoint=str(elsewhere))
        catalog = AdapterCatalog(settings, studio.history)
        found = {e.name: e for e in catalog.for_model("preview")}
    finally:
        studio.close()
    assert sorted(found) == ["run-a · final", "run-a · step 250", "run-b · final", "run-b · step 10",
                             "styles / ink-wash"]
    assert all(e.kind == "hydralora" and e.base_model == "preview" for e in found.values())
    assert [Path(p).name for p, _ in catalog.problems] == ["broken.safetensors"]  # skipped, said so
    assert catalog.for_model("wan2.1-t2v-1.3b") == () and catalog.for_model("hunyuanvideo") == ()
    entry = found["styles / ink-wash"]
    assert entry.label("preview") == "styles / ink-wash · HydraLoRA"
    assert "HunyuanVideo" in (entry.misfit(REGISTRY["hunyuanvideo"]) or "")


def test_a_preset_for_a_real_model_fits_itself_to_the_preview_model(settings: Any) -> None:
    """Combat Sakuga Dash asks for 49 frames; the preview model takes at most 33."""
    from engine.core.pks import load_taxonomy
    from engine.core.presets import PresetLibrary, builtin_presets_dir

    from app import adapters

    preset = PresetLibrary(builtin_presets_dir(), settings.presets_dir, load_taxonomy()).get("combat-sakuga-dash")
    on_preview, kept = adapters.fit_preset_to_model(
        adapters.apply_preset(adapters.FormValues(model="preview"), preset), preset)
    assert on_preview.num_frames == 9 and on_preview.fps == preset.settings["fps"]  # only what does not fit
    assert any(k.startswith("Frames 49") for k in kept)
    adapters.request_from_form(on_preview)  # Generate would accept it
    on_wan, kept_wan = adapters.fit_preset_to_model(
        adapters.apply_preset(adapters.FormValues(model="wan2.1-t2v-1.3b"), preset), preset)
    assert kept_wan == [] and on_wan.num_frames == preset.settings["num_frames"]


def test_catalog_file_names_are_the_engines() -> None:
    """The catalogs spell the config names out so listing needs no torch; they must not drift."""
    from engine.core import adapters, catalog, preview, tag_encoder

    assert catalog.ADAPTER_CONFIG == adapters.io.CONFIG_NAME
    assert (catalog.TAG_ENCODER_CONFIG, catalog.TAG_ENCODER_WEIGHTS) == (tag_encoder.CONFIG_NAME, tag_encoder.WEIGHTS_NAME)
    assert catalog.PREVIEW_TEXT_DIM == preview.TEXT_DIM
    from engine.core.registry import REGISTRY

    assert all(catalog.tag_encoder_family(spec) == tag_encoder.family_name(spec) for spec in REGISTRY.values())

