"""The Create tab's "Transformer file" through the studio's API (gradio_client), real server and preview model.

A GGUF written from the preview model's own transformer into ``<models>/gguf`` is listed (by Rescan and
by the page-load event), a clip generated with it records the file in its history row and "Reuse
settings" gives it back; a missing file is refused by the engine with a toast naming "Transformer file"
and nothing is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

pytest.importorskip("gradio_client")
pytest.importorskip("gguf", reason="the gguf package is missing (pip install gguf)")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app import adapters  # noqa: E402
from app.services.context import StudioServices  # noqa: E402
from app.ui import StudioApp  # noqa: E402

from support.app import make_settings, small_form, value, serve  # noqa: E402

NAME = "preview-q8.gguf"


def write_preview_gguf(preview_folder: Path, path: Path) -> Path:
    """The preview transformer's weights as a community GGUF: 2-D weights in Q8_0 where rows allow, the rest F32."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize
    from safetensors.numpy import load_file

    state: dict[str, np.ndarray] = {}
    for weights in sorted((preview_folder / "transformer").glob("*.safetensors")):
        state.update(load_file(str(weights)))
    writer = GGUFWriter(str(path), arch="wan")
    for name, array in state.items():
        array = array.astype(np.float32)
        if array.ndim == 2 and array.shape[1] % 32 == 0:
            q = quantize(array, GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           preview_folder: Path) -> Iterator[tuple[StudioServices, StudioApp, Client]]:
    with serve(make_settings(tmp_path_factory.mktemp("transformer-file"), preview_folder)) as served_studio:
        yield served_studio


def _gguf_dir(services: StudioServices) -> Path:
    folder = services.settings.gguf_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def test_a_gguf_in_the_folder_is_listed_generates_and_is_kept(served: tuple[StudioServices, StudioApp, Client],
                                                              preview_folder: Path) -> None:
    services, app, client = served
    history, tax = services.studio.history, services.taxonomy
    folder = _gguf_dir(services)
    (folder / NAME).unlink(missing_ok=True)  # the other test may have written it
    (folder / "notes.txt").write_text("not a transformer")  # only .gguf / .safetensors are offered
    dropdown, note = client.predict(api_name="/list_transformer_files")
    assert [tuple(c) for c in dropdown["choices"]] == [("none", "")] and note.startswith("No transformer file")

    path = write_preview_gguf(preview_folder, folder / NAME)  # written while the studio runs
    dropdown, note = client.predict(api_name="/list_transformer_files")
    choices = [tuple(c) for c in dropdown["choices"]]
    assert choices[0] == ("none", "") and [c[1] for c in choices[1:]] == [NAME]
    assert choices[1][0].startswith(f"{NAME} · ") and note.startswith("1 transformer file in")
    # The page-load event lists it too (what a browser opening the studio gets).
    box = next(b for b in app.blocks.blocks.values() if getattr(b, "elem_id", None) == "transformer-file")
    on_load = [fn for fn in app.blocks.fns.values()
               if box in fn.outputs and any(t[1] == "load" for t in fn.targets)]
    assert len(on_load) == 1 and on_load[0].fn is not None
    loaded, _ = on_load[0].fn()
    assert [c[1] for c in loaded["choices"]] == ["", NAME]

    form = small_form(transformer_file=NAME)
    job_id, status = client.predict(*adapters.form_to_values(form, tax), api_name="/submit")
    video, _, _, run_status = client.predict(job_id, api_name="/run_job")
    record = history.get(job_id)
    assert record.status == "done" and Path(video).is_file(), run_status
    assert record.request.transformer_file == NAME and path.is_file()

    reused = [value(v) for v in client.predict(str(job_id), api_name="/reuse")]
    keys = adapters.form_keys(tax)
    back = adapters.form_from_values(reused[: len(keys)], tax)
    assert back.transformer_file == NAME and back.quantization == "none"
    assert adapters.request_from_form(back).transformer_file == NAME


def error_of(call: Any) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return str(caught.value)


def test_a_missing_file_is_refused_naming_the_field_and_writes_nothing(
        served: tuple[StudioServices, StudioApp, Client], preview_folder: Path) -> None:
    services, _, client = served
    history, tax = services.studio.history, services.taxonomy
    data = services.settings.data_dir
    before_total = history.list().total
    media = services.settings.media_dir
    before_files = _files_under(media)

    missing = small_form(transformer_file="nope-Q4_K_M.gguf")
    refused = error_of(lambda: client.predict(*adapters.form_to_values(missing, tax), api_name="/submit"))
    assert refused.startswith("Transformer file:") and "nope-Q4_K_M.gguf does not exist" in refused, refused
    typed = small_form(transformer_file=str(data / "elsewhere" / "model.bin"))  # a typed path, wrong kind
    refused = error_of(lambda: client.predict(*adapters.form_to_values(typed, tax), api_name="/submit"))
    assert refused.startswith("Transformer file:") and "neither a .gguf nor a .safetensors" in refused, refused

    assert history.list().total == before_total
    assert _files_under(media) == before_files
