"""The Presets tab and the Create tab's adapters and "Save as preset", in a real browser.

Browses and searches the presets, selects one (its compiled prompt shows; a built-in cannot be
renamed or deleted), uses it in Create (the tag dropdowns fill); lists a HydraLoRA for the
preview model in Create and saves the form as a preset, which then shows in both preset lists.
Screenshots of both tabs at 1280x800 and 420 px wide (to docs/ui/ with ANIMATRIX_UPDATE_SCREENSHOTS=1).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from support.browser import pick, shoot  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (requirements-dev.txt)")

from app.services.context import StudioServices  # noqa: E402

from support.app import make_settings, serve  # noqa: E402
from support.app import tiny_hydralora  # noqa: E402

expect = sync_api.expect


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory, preview_folder: Path) -> Iterator[tuple[StudioServices, str]]:
    settings = make_settings(tmp_path_factory.mktemp("ui-presets"), preview_folder)
    tiny_hydralora(settings.models_dir / "adapters" / "tiny-hydra")
    with serve(settings) as (services, _, client):
        yield services, client.src




def open_page(browser: sync_api.Browser, url: str, width: int = 1280, height: int = 800) -> sync_api.Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    for selector in ("#generate", "#narrative textarea", "#tag-style-school input"):
        page.wait_for_selector(selector)
    page.wait_for_timeout(800)  # the last components finish mounting
    return page


def open_presets(page: sync_api.Page) -> None:
    page.get_by_role("tab", name="Presets").click()
    expect(page.locator("#presets-table")).to_contain_text("Combat Sakuga Dash")


def select_row(page: sync_api.Page, name: str) -> None:
    page.locator("#presets-table [role=row]").filter(has_text=name).first.locator("[role=gridcell]").first.click()
    expect(page.locator("#preset-summary")).to_contain_text(name)


def expect_rows(page: sync_api.Page, count: int) -> None:
    """The table is virtual (only the rows in view are in the page); the grid says how many it has."""
    expect(page.locator("#presets-table [role=grid]")).to_have_attribute("aria-rowcount", str(count + 1))


def test_browse_search_preview_and_use_in_create(studio: tuple[StudioServices, str], browser: sync_api.Browser,
                                                 tmp_path: Path) -> None:
    services, url = studio
    page = open_page(browser, url)
    open_presets(page)
    rows = page.locator("#presets-table [role=row]")
    expect_rows(page, len(services.presets.list()))

    # Search by a tag label: only presets with that tag stay.
    page.locator("#presets-search input").fill("impact frame")
    expect(page.locator("#presets-count")).to_contain_text("match “impact frame”")
    expect_rows(page, len(services.presets.search("impact frame")))
    expect(rows.filter(has_text="Quiet Window Afternoon")).to_have_count(0)
    expect(rows.filter(has_text="Combat Sakuga Dash")).to_have_count(1)

    # Select: details and the compiled prompt; a built-in is read-only.
    select_row(page, "Combat Sakuga Dash")
    expect(page.locator("#preset-compiled textarea")).to_have_value(
        re.compile(r"explosive combat dash.*young swordsman in a torn black coat"))
    expect(page.locator("#preset-summary")).to_contain_text("built-in, read-only")
    expect(page.locator("#preset-details")).to_contain_text("Motion · Performance: Combat dash")
    expect(page.locator("#preset-rename")).to_be_disabled()
    expect(page.locator("#preset-delete")).to_be_disabled()
    expect(page.locator("#preset-use")).to_be_enabled()
    expect(page.locator("#preset-export")).to_be_enabled()
    with page.expect_download() as download:
        page.click("#preset-export")
    assert download.value.suggested_filename == "combat-sakuga-dash.yaml"
    exported = services.presets.read_file(Path(download.value.path()))
    assert exported.tags == services.presets.get("combat-sakuga-dash").tags
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "presets-1280")

    # Use in Create: the Create tab opens with the preset's tags in its dropdowns.
    page.click("#preset-use")
    expect(page.locator("#generate")).to_be_visible()
    expect(page.locator("#preset input")).to_have_value(re.compile("Combat Sakuga Dash"))
    expect(page.locator("#preset-badge")).to_contain_text("Combat Sakuga Dash")
    expect(page.locator("#narrative textarea")).to_have_value(re.compile("young swordsman"))
    expect(page.locator("#tag-style-school input")).to_have_value(re.compile("^Bold-shape action"))
    page.get_by_role("tab", name="Motion").click()
    expect(page.locator("#tag-motion-performance input")).to_have_value(re.compile("^Combat dash"))
    expect(page.locator("#compiled-prompt textarea")).to_have_value(re.compile("explosive combat dash"))
    expect(page.locator("#num-fps input")).to_have_value("24")
    # An edit marks it modified, as with the Create tab's own dropdown.
    pick(page, "tag-motion-intensity", "Subtle")
    expect(page.locator("#preset-badge")).to_contain_text("modified")
    page.close()

    narrow = browser.new_page(viewport={"width": 420, "height": 900})
    narrow.goto(url)
    narrow.wait_for_selector("#generate")
    open_presets(narrow)
    select_row(narrow, "Mecha Launch")
    narrow.wait_for_timeout(300)
    shoot(narrow, tmp_path, "presets-420")
    narrow.close()


def test_adapters_listed_and_save_as_preset(studio: tuple[StudioServices, str], browser: sync_api.Browser,
                                            tmp_path: Path) -> None:
    services, url = studio
    page = open_page(browser, url)
    expect(page.locator("#adapters")).to_contain_text("Adapters (HydraLoRA / LoRA) · 1 available")
    page.click("#adapters button, #adapters .label-wrap")
    expect(page.locator("#adapters-note")).to_contain_text("1 adapter fits Preview")
    expect(page.locator("#adapter-row-2")).to_be_hidden()
    pick(page, "adapter-1", "tiny-hydra · HydraLoRA")
    expect(page.locator("#adapter-row-2")).to_be_visible()  # the next slot opens once one is used
    expect(page.locator("#adapters-merge-note")).to_contain_text("cannot be merged")

    page.locator("#narrative textarea").fill("a courier bikes through neon rain")
    pick(page, "tag-style-school", "90s cel")
    page.click("#save-preset-box button, #save-preset-box .label-wrap")
    page.locator("#save-preset-name input").fill("Neon Courier")
    page.locator("#save-preset-description textarea").fill("Saved from the browser test.")
    page.wait_for_timeout(300)
    shoot(page, tmp_path, "create-adapters-1280")
    page.click("#save-preset")
    expect(page.locator("#preset-badge")).to_contain_text("Neon Courier")
    expect(page.locator("#preset input")).to_have_value(re.compile("Neon Courier"))
    saved = services.presets.get("neon-courier")
    assert saved.tags["style.school"] == ("cel_90s",) and saved.narrative.startswith("a courier")

    # The Presets tab lists it as one of the user's, with Rename and Delete enabled.
    open_presets(page)
    expect(page.locator("#presets-table [role=row]").nth(1)).to_contain_text("Neon Courier")  # yours first
    page.locator("#presets-search input").fill("courier neon")
    expect_rows(page, 1)
    select_row(page, "Neon Courier")
    expect(page.locator("#preset-rename")).to_be_enabled()
    expect(page.locator("#preset-delete")).to_be_enabled()
    # A rename reaches Create's "Save as preset" name too, so the next save updates the renamed preset.
    page.locator("#preset-new-name input").fill("Neon Courier Night")
    page.click("#preset-rename")
    expect(page.locator("#presets-table")).to_contain_text("Neon Courier Night")
    page.get_by_role("tab", name="Create").click()
    expect(page.locator("#save-preset-name input")).to_have_value("Neon Courier Night")
    expect(page.locator("#preset input")).to_have_value(re.compile("Neon Courier Night"))
    page.get_by_role("tab", name="Presets").click()  # still searched for "courier neon"
    expect_rows(page, 1)
    select_row(page, "Neon Courier Night")
    page.click("#preset-delete")
    expect(page.locator("#preset-confirm")).to_contain_text("Delete your preset Neon Courier Night")
    page.click("#preset-confirm-delete")
    expect(page.locator("#presets-table")).not_to_contain_text("Neon Courier")
    assert not services.presets.exists("neon-courier") and not services.presets.exists("neon-courier-night")
    page.get_by_role("tab", name="Create").click()
    page.locator("#preset input").click()
    expect(page.locator("#preset li[role=option]").filter(has_text="Neon Courier")).to_have_count(0)
    page.keyboard.press("Escape")
    page.close()

    narrow = open_page(browser, url, width=420, height=900)
    narrow.click("#adapters button, #adapters .label-wrap")
    pick(narrow, "adapter-1", "tiny-hydra · HydraLoRA")
    narrow.wait_for_timeout(300)
    shoot(narrow, tmp_path, "create-adapters-420")
    # Another model: the preview's adapter comes off, with a warning that says why.
    pick(narrow, "model", "Wan2.1 T2V 1.3B")
    expect(narrow.get_by_text(re.compile("Adapter removed: tiny-hydra does not fit wan2.1-t2v-1.3b")).first) \
        .to_be_visible(timeout=15_000)
    expect(narrow.locator("#adapter-1 input")).to_have_value("None")
    expect(narrow.locator("#adapters-note")).to_contain_text("No adapter fits Wan2.1 T2V 1.3B")
    narrow.close()


def test_refused_import_leaves_the_table_and_the_selection(studio: tuple[StudioServices, str],
                                                          browser: sync_api.Browser, tmp_path: Path) -> None:
    """A bad preset file: a warning toast naming the key; no red "Error" box over the table or fields."""
    services, url = studio
    bad = tmp_path / "teleport.yaml"
    bad.write_text("schema_version: 1\nname: Teleport Shot\ntags:\n  camera.movement: teleport\n", encoding="utf-8")
    before = sorted(p.name for p in services.settings.presets_dir.iterdir())
    page = open_page(browser, url)
    open_presets(page)
    select_row(page, "Mecha Launch")
    compiled = page.locator("#preset-compiled textarea").input_value()
    page.locator("#presets-import input[type=file]").set_input_files(str(bad))
    toast = page.get_by_text(re.compile(r"Import refused — .*teleport"))
    expect(toast.first).to_be_visible(timeout=15_000)
    page.wait_for_timeout(500)  # an error status would have painted by now
    assert page.locator(".error").count() == 0, "an output turned into an Error box"
    expect_rows(page, len(services.presets.list()))
    expect(page.locator("#presets-table")).to_contain_text("Mecha Launch")
    expect(page.locator("#preset-summary")).to_contain_text("Mecha Launch")
    expect(page.locator("#preset-compiled textarea")).to_have_value(compiled)
    expect(page.locator("#presets-import")).not_to_contain_text("teleport.yaml")  # ready for a corrected file
    shoot(page, tmp_path, "presets-refused-import-1280", full_page=False)
    assert sorted(p.name for p in services.settings.presets_dir.iterdir()) == before  # nothing written
    page.close()
