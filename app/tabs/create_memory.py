"""Create tab, "Memory and speed": quantization, offload, VAE tiling, a transformer file, the speed
profile and its parts (step cache, compiled blocks, attention backend), Free memory.

Each speed profile shows what it was measured to gain and to cost (docs/benchmarks.md); picking
one clears a typed step cache so the profile's own applies. Combinations that cannot run here are
the engine's to refuse, when the job is submitted, as a toast naming the field.

A transformer file replaces the model folder's transformer with one file: a community GGUF (Q8_0,
Q4_K_M, …) or a single .safetensors. The files under `<data dir>/models/gguf/` are listed on page
load and on "Rescan"; any other path can be typed. The UI does not check the file: the engine does
when the job is submitted, and its refusal comes back as a toast naming "Transformer file".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine.core.requests import ATTENTION_BACKENDS, OFFLOAD_MODES, QUANTIZATION_MODES, SPEED_PROFILES
from engine.core.settings import Settings
from engine.core.single_file import listed_files

from .. import adapters
from ..adapters import FormValues
from ..feedback import refuse, refusals
from ..services.context import StudioServices, shown_folder
from ..services.identity import require_creator

# Label "none", value "": the form's "no transformer file" (see adapters.NO_TRANSFORMER_FILE).
NO_TRANSFORMER_FILE: tuple[str, str] = (adapters.NO_TRANSFORMER_FILE, "")
TRANSFORMER_FILE_INFO = ("replaces the model folder's transformer: a community GGUF (Q8_0, Q4_K_M, …) or one "
                         ".safetensors, from models/gguf or a path you type; a quantization mode then applies "
                         "to the text encoder only")
CACHE_CHOICES: tuple[tuple[str, str], ...] = (
    ("the profile's", ""), ("none", "none"), ("first-block:0.05", "first-block:0.05"),
    ("first-block:0.1", "first-block:0.1"), ("first-block:0.2", "first-block:0.2"),
    ("taylorseer:2", "taylorseer:2"), ("taylorseer:3", "taylorseer:3"), ("taylorseer:4", "taylorseer:4"),
)
# Figures from docs/benchmarks.md "Speed profiles" (real-size 1.3B, 10 steps, CPU).
CACHE_INFO = ("reuse work between steps: first-block:THRESHOLD (higher skips more; up to 0.2 it skipped "
              "nothing in the benchmark) or taylorseer:INTERVAL (a full step every INTERVAL; 2/3/4 measured "
              "1.2/1.7/1.9x faster at 10 steps); empty: the speed profile's")


def speed_choices() -> list[tuple[str, str]]:
    """Each profile with what it was measured to gain and cost (engine.core.speed.PROFILE_NOTES)."""
    from engine.core.speed import PROFILE_NOTES

    return [(f"{name} — {PROFILE_NOTES[name]}", name) for name in SPEED_PROFILES]


@dataclass
class MemoryBox:
    quantization: gr.Dropdown
    offload: gr.Dropdown
    vae_tiling: gr.Radio
    transformer_file: gr.Dropdown  # a file name in models/gguf, a path, or "" for the folder's own
    transformer_note: gr.Markdown
    transformer_rescan: gr.Button
    free_memory: gr.Button
    speed: gr.Dropdown
    cache: gr.Dropdown
    compile_blocks: gr.Checkbox
    attention: gr.Dropdown


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
    folder = shown_folder(services, services.settings.gguf_dir)
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
        speed = gr.Dropdown(speed_choices(), value=form.speed, label="Speed", elem_id="speed",
                            info="measured on a CPU with the real-size Wan2.1-1.3B and random weights; "
                                 "see docs/speed.md")
        with gr.Row():
            cache = gr.Dropdown(list(CACHE_CHOICES), value=form.cache, label="Step cache", allow_custom_value=True,
                                info=CACHE_INFO, elem_id="speed-cache", min_width=150)
            attention = gr.Dropdown(list(ATTENTION_BACKENDS), value=form.attention, label="Attention backend",
                                    info="auto: PyTorch's own; flash / sage need their package and a GPU",
                                    elem_id="speed-attention", min_width=150)
        compile_blocks = gr.Checkbox(value=form.compile_blocks, label="Compile blocks (torch.compile, for GPUs: the first "
                                     "job after loading spends minutes compiling; 0.85x, slower, on a CPU)", elem_id="speed-compile")
        with gr.Row():
            rescan = gr.Button("Rescan transformer files", size="sm", elem_id="transformer-file-rescan")
            free_memory = gr.Button("Free memory", size="sm", elem_id="free-memory")
    return MemoryBox(quantization, offload, vae_tiling, transformer_file, transformer_note, rescan, free_memory,
                     speed, cache, compile_blocks, attention)


def inputs(box: MemoryBox) -> dict[str, object]:
    """This section's form components by form key (app.adapters.SCALAR_KEYS)."""
    return {"quantization": box.quantization, "offload": box.offload, "vae_tiling": box.vae_tiling,
            "transformer_file": box.transformer_file, "speed": box.speed, "cache": box.cache,
            "compile_blocks": box.compile_blocks, "attention": box.attention}


def wire(box: MemoryBox, services: StudioServices) -> None:
    runner = services.runner

    @refusals("Free memory", 0)
    def free_memory(request: gr.Request) -> None:
        # Unloading slows every user's next clip: on a studio whose users see only their own
        # work, only an admin may do it (raters never).
        viewer = require_creator(services, request)
        if not services.access.sees_all(viewer):
            refuse("only an admin can unload the models on a studio shared by several users")
        freed = runner.free_memory()
        if freed is None:
            gr.Warning("A clip is being generated; free memory once it has finished.")
        elif freed == 0:
            gr.Info("Nothing was loaded; memory is already free.")
        else:
            gr.Info(f"Freed {freed} loaded model from memory.")

    box.free_memory.click(free_memory, api_name="free_memory")
    # A new profile brings its own cache; a typed one would otherwise silently win over it.
    box.speed.input(lambda: "", outputs=box.cache, show_progress="hidden", api_visibility="private")
    listing = [box.transformer_file, box.transformer_note]
    gr.on(None, lambda: transformer_file_list(services), outputs=listing, show_progress="hidden",
          api_visibility="private")
    box.transformer_rescan.click(lambda: transformer_file_list(services), outputs=listing,
                                 api_name="list_transformer_files", show_progress="hidden")
