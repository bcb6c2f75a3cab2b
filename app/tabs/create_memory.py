"""Create tab, "Memory and speed": quantization, offload, VAE tiling, a transformer file, Free memory.

A transformer file replaces the model folder's transformer with one file: a community GGUF (Q8_0,
Q4_K_M, …) or a single .safetensors. The files under `<data dir>/models/gguf/` are listed on page
load and on "Rescan"; any other path can be typed. The UI does not check the file: the engine does
when the job is submitted, and its refusal comes back as a toast naming "Transformer file".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine.core.requests import OFFLOAD_MODES, QUANTIZATION_MODES
from engine.core.settings import Settings
from engine.core.single_file import listed_files

from .. import adapters
from ..adapters import FormValues
from ..services.context import StudioServices

# Label "none", value "": the form's "no transformer file" (see adapters.NO_TRANSFORMER_FILE).
NO_TRANSFORMER_FILE: tuple[str, str] = (adapters.NO_TRANSFORMER_FILE, "")
TRANSFORMER_FILE_INFO = ("replaces the model folder's transformer: a community GGUF (Q8_0, Q4_K_M, …) or one "
                         ".safetensors, from models/gguf or a path you type; needs quantization none")


@dataclass
class MemoryBox:
    quantization: gr.Dropdown
    offload: gr.Dropdown
    vae_tiling: gr.Radio
    transformer_file: gr.Dropdown  # a file name in models/gguf, a path, or "" for the folder's own
    transformer_note: gr.Markdown
    transformer_rescan: gr.Button
    free_memory: gr.Button


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def transformer_file_choices(settings: Settings) -> list[tuple[str, str]]:
    """"none", then each file in models/gguf by name (the name is what the engine and history keep)."""
    return [NO_TRANSFORMER_FILE, *[(f"{p.name} · {_size(p)}", p.name) for p in listed_files(settings.gguf_dir)]]


def transformer_file_list(services: StudioServices) -> tuple[object, str]:
    """Values for [transformer_file, transformer_note]: the files now in models/gguf."""
    choices = transformer_file_choices(services.settings)
    count = len(choices) - 1
    folder = services.settings.gguf_dir
    note = (f"{count} transformer file{'s' if count != 1 else ''} in `{folder}`." if count
            else f"No transformer file in `{folder}`; put a .gguf or .safetensors there, or type a path.")
    return gr.update(choices=choices), note


def build(form: FormValues) -> MemoryBox:
    with gr.Accordion("Memory and speed", open=False, elem_id="memory"):
        with gr.Row():
            quantization = gr.Dropdown(list(QUANTIZATION_MODES), value=form.quantization, label="Quantization",
                                       info="int8/fp8 weights use less VRAM", min_width=150)
            offload = gr.Dropdown(list(OFFLOAD_MODES), value=form.offload, label="Offload",
                                  info="auto picks from free VRAM", min_width=150)
        vae_tiling = gr.Radio(list(adapters.VAE_TILING_CHOICES), value=form.vae_tiling, label="VAE tiling")
        # Choices are filled on page load: the folder may change while the studio runs.
        transformer_file = gr.Dropdown([NO_TRANSFORMER_FILE], value=form.transformer_file, label="Transformer file",
                                       allow_custom_value=True, info=TRANSFORMER_FILE_INFO, elem_id="transformer-file")
        transformer_note = gr.Markdown("", elem_classes=["muted"], elem_id="transformer-file-note")
        with gr.Row():
            rescan = gr.Button("Rescan transformer files", size="sm", elem_id="transformer-file-rescan")
            free_memory = gr.Button("Free memory", size="sm", elem_id="free-memory")
    return MemoryBox(quantization, offload, vae_tiling, transformer_file, transformer_note, rescan, free_memory)


def wire(box: MemoryBox, services: StudioServices) -> None:
    runner = services.runner

    def free_memory() -> None:
        freed = runner.free_memory()
        if freed is None:
            gr.Warning("A clip is being generated; free memory once it has finished.")
        elif freed == 0:
            gr.Info("Nothing was loaded; memory is already free.")
        else:
            gr.Info(f"Freed {freed} loaded model from memory.")

    box.free_memory.click(free_memory, api_name="free_memory")
    listing = [box.transformer_file, box.transformer_note]
    gr.on(None, lambda: transformer_file_list(services), outputs=listing, show_progress="hidden",
          api_visibility="private")
    box.transformer_rescan.click(lambda: transformer_file_list(services), outputs=listing,
                                 api_name="list_transformer_files", show_progress="hidden")
