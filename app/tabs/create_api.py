"""`/generate`: one API call, with named parameters, that makes a clip and returns it.

For `gradio_client` users (a Space is often driven from a script): a prompt, tags as a dict or a
list of `field=value`, and optional preset, model and settings in; the mp4 and its settings out.
It goes through the same job runner (and history) as the Generate button; bad input comes back
as an error naming the parameter, with nothing written. The endpoint's components are hidden:
the page does not show them, the API page documents them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from engine.core.errors import InvalidRequest
from engine.core.generation import Progress
from engine.core.presets import PresetLibrary
from engine.core.requests import GenerationRequest

from ..adapters import ui_message
from ..feedback import refuse, refusals
from ..services.context import StudioServices
from ..services.identity import require_creator
from ..services.jobs import estimate_seconds, gpu_function

# API parameter -> GenerationRequest field (the rest have the same name).
_RENAMED = {"frames": "num_frames"}
NUMBERS = ("seed", "frames", "width", "height", "fps", "steps", "guidance")
TEXTS = ("quantization", "offload")


def parse_tags(tags: Any) -> dict[str, Any]:
    """`{"camera.movement": "whip_pan", "vfx.effects": ["speed_lines"]}` or `["camera.movement=whip_pan", ...]`."""
    if tags in (None, "", [], {}):
        return {}
    if isinstance(tags, dict):
        return {str(k): v for k, v in tags.items()}
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        out: dict[str, list[str]] = {}
        for item in tags:
            field, sep, value = item.partition("=")
            if not sep or not field.strip() or not value.strip():
                raise InvalidRequest("tags", f"'{item}' is not field=value (e.g. camera.movement=whip_pan)")
            out.setdefault(field.strip(), []).append(value.strip())
        return {k: v[0] if len(v) == 1 else v for k, v in out.items()}
    raise InvalidRequest("tags", "must be a dict of field: value(s) or a list of 'field=value' strings")


def build_request(services: StudioServices, narrative: str, tags: Any, preset: str, model: str,
                  numbers: dict[str, Any], texts: dict[str, Any],
                  library: PresetLibrary | None = None) -> GenerationRequest:
    """The call's parameters as a request: the preset (of `library`, the caller's) first, then what
    the call names."""
    base: dict[str, Any] = {}
    if preset and preset.strip():
        base.update((library or services.presets).find(preset).to_request_overrides())
    given = parse_tags(tags)
    if given:
        base["tags"] = {**base.get("tags", {}), **given}
    if narrative and narrative.strip():
        base["narrative"] = narrative
    elif not base.get("narrative"):
        raise InvalidRequest("narrative", "is required (or name a preset that has one)")
    base["model"] = model.strip() if model and model.strip() else base.get("model", services.default_model)
    for key, value in numbers.items():
        if value is not None and value != "":
            base[_RENAMED.get(key, key)] = int(value) if key != "guidance" and float(value).is_integer() else value
    base.update({k: v for k, v in texts.items() if v})
    return GenerationRequest.from_dict(base)


def build() -> dict[str, Any]:
    """The endpoint's hidden components: its parameters (by name) and its two outputs."""
    with gr.Column(visible=False, elem_id="generate-api"):
        parts: dict[str, Any] = {
            "narrative": gr.Textbox("", label="narrative"),
            "tags": gr.JSON({}, label="tags"),
            "preset": gr.Textbox("", label="preset"),
            "model": gr.Textbox("", label="model"),
            **{k: gr.Number(None, label=k) for k in NUMBERS},
            **{k: gr.Textbox("", label=k) for k in TEXTS},
            "anyway": gr.Checkbox(False, label="anyway"),  # generate despite a soft contradiction
            "video": gr.File(label="video"),  # a File: the client gets the mp4 path itself
            "settings": gr.JSON(label="settings"),
            "button": gr.Button("generate"),
        }
    return parts


def wire(parts: dict[str, Any], services: StudioServices) -> None:
    tax = services.taxonomy
    runner = services.runner
    history = services.studio.history

    def run_job(job_id: int, progress: gr.Progress) -> tuple[str, dict[str, Any]]:
        def report(p: Progress) -> None:
            progress((p.step, p.total) if p.stage == "denoising" else None, desc=f"Job #{job_id}: {p.describe()}")

        record = runner.run(job_id, progress=report, follow=True).record
        video = history.video_path(record)
        if record.status != "done" or video is None:
            refuse(f"Job #{job_id} {record.status}: {record.error or 'no clip'}", f"Job #{job_id}")
        settings = {"id": record.id, "seed": record.seed, "request": record.request.to_dict(),
                    "compiled_prompt": record.compiled_prompt, "timings": dict(record.timings or {})}
        return str(video), settings

    def duration(job_id: int, *_: Any, **__: Any) -> int:
        return estimate_seconds(history.get(job_id))

    on_gpu = gpu_function(run_job, duration)

    @refusals("Generate", outputs=2, taxonomy=tax)
    def generate(narrative: str = "", tags: Any = None, preset: str = "", model: str = "", seed: float | None = None,
                 frames: float | None = None, width: float | None = None, height: float | None = None,
                 fps: float | None = None, steps: float | None = None, guidance: float | None = None,
                 quantization: str = "", offload: str = "", anyway: bool = False, request: gr.Request | None = None,
                 progress: gr.Progress = gr.Progress()) -> tuple[str, dict[str, Any]]:
        """Make one clip: narrative and tags (a dict, or a list of "field=value"), optionally a preset (id or
        name), a model and settings (`anyway`: despite an unusual tag pair); returns the mp4 and its settings (history id, seed, request, timings)."""
        numbers = {"seed": seed, "frames": frames, "width": width, "height": height, "fps": fps, "steps": steps,
                   "guidance": guidance}
        viewer = require_creator(services, request)
        try:
            job = build_request(services, narrative, tags, preset, model, numbers,
                                {"quantization": quantization, "offload": offload}, services.presets_for(viewer))
            job = replace(job, allow_soft_contradictions=bool(anyway))
        except InvalidRequest as exc:  # before ValueError, which it is too
            refuse(ui_message(exc, tax))
        except (TypeError, ValueError) as exc:
            refuse(f"request: {exc}")
        job_id = runner.submit(job, viewer=viewer, source="api")
        return on_gpu(job_id, progress)

    names = ("narrative", "tags", "preset", "model", *NUMBERS, *TEXTS, "anyway")
    parts["button"].click(generate, inputs=[parts[k] for k in names], outputs=[parts["video"], parts["settings"]],
                          api_name="generate", concurrency_limit=1, concurrency_id="gpu")
