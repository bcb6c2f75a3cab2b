"""`/generate`: one API call, with named parameters, that makes a clip and returns it.

For `gradio_client` users (a Space is often driven from a script): a prompt, tags as a dict or a
list of `field=value`, and optional preset, model and settings in; the mp4 and its settings out.
The parameters are the request's declared settings (engine/core/request_schema.py), each named
after its CLI flag (`frames`, `negative`, `cache`, ...), so a new setting reaches the API by itself.
It goes through the same job runner (and history) as the Generate button; bad input comes back
as an error naming the parameter, with nothing written. The endpoint's components are hidden:
the page does not show them, the API page documents them.
"""
from __future__ import annotations

import inspect
from typing import Any

import gradio as gr

from engine.core.errors import InvalidRequest
from engine.core.generation import Progress
from engine.core.presets import PresetLibrary
from engine.core.request_schema import Setting, api_name, declared, merge_settings, parse_adapter, parse_cache
from engine.core.requests import GenerationRequest

from ..adapters import ui_message
from ..feedback import refuse, refusals
from ..services.context import StudioServices
from ..services.identity import require_creator
from ..services.jobs import estimate_seconds, gpu_function

# The parameters the API had first, in their order (a positional caller keeps working); every other
# declared setting follows in declaration order, named after its CLI flag (request_schema.api_name).
_FIRST = ("narrative", "tags", "preset", "model", "seed", "frames", "width", "height", "fps", "steps", "guidance",
          "quantization", "offload", "anyway")
_ON, _OFF = ("on", "true", "yes"), ("off", "false", "no")
# The API's own parameters after the settings: `preview` asks for live previews (off unless asked:
# a script that never looks at them does not pay for them); `/job_preview` then returns the picture.
_LAST = ("preview",)


def api_settings() -> dict[str, tuple[str, Setting]]:
    """API parameter -> (request field, its declaration), for every setting the API takes."""
    return {api_name(f.name, spec): (f.name, spec) for f, spec in declared(GenerationRequest) if spec.api and spec.flag}


def parameter_names() -> tuple[str, ...]:
    """The endpoint's parameters in order: `preset` (the API's own) and the declared settings."""
    rest = tuple(name for name in api_settings() if name not in _FIRST and name not in _LAST)
    return _FIRST + rest + _LAST


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


def wants_preview(value: Any) -> bool:
    """The API's `preview`: a tick, on/off, or nothing (off)."""
    if value is None or value is False or value == "":
        return False
    word = "on" if value is True else str(value).strip().lower()
    if word not in (*_ON, *_OFF):
        raise InvalidRequest("preview", f"must be on or off, got {value!r}")
    return word in _ON


def _adapters(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            out.append(dict(item))
            continue
        try:
            out.append(parse_adapter(str(item)))
        except ValueError:
            raise InvalidRequest("adapters", f"'{item}' is not PATH or PATH:STRENGTH") from None
    return out


def _setting(field: str, spec: Setting, value: Any) -> dict[str, Any]:
    """One parameter's value as request settings ({} when not given: the preset's or the model's)."""
    if value is None or value == "" or value == [] or value == {} or value is False:
        return {}  # a false "anyway" is the default too
    if spec.kind == "int":
        return {field: int(value) if float(value).is_integer() else value}  # 7.0 from a Number is 7
    if spec.kind == "bool" and isinstance(value, str):  # on/off, or empty for unset
        word = value.strip().lower()
        if word not in (*_ON, *_OFF):
            raise InvalidRequest(field, f"must be on, off or empty (unset), got {value!r}")
        return {field: word in _ON}
    if spec.kind == "adapters":
        return {field: _adapters(value)}
    if field == "cache":  # KIND[:NUMBER]: the number is the cache's threshold or interval
        try:
            kind, number = parse_cache(str(value))
        except ValueError:
            raise InvalidRequest("cache", f"'{value}' is not KIND or KIND:NUMBER (e.g. first-block:0.1)") from None
        return {"cache": kind} if number is None else {"cache": kind, "cache_threshold": number}
    return {field: value.strip() if isinstance(value, str) else value}


def build_request(services: StudioServices, values: dict[str, Any],
                  library: PresetLibrary | None = None) -> GenerationRequest:
    """The call's parameters (by API name) as a request: the preset (of `library`, the caller's)
    first, then what the call names, through the one merger the CLI and the form use too."""
    preset = values.get("preset") or ""
    base = (library or services.presets).find(preset).to_request_overrides() if preset.strip() else {}
    given: dict[str, Any] = {}
    for name, (field, spec) in api_settings().items():
        if spec.kind != "tags":
            given.update(_setting(field, spec, values.get(name)))
    if "narrative" not in given and not base.get("narrative"):
        raise InvalidRequest("narrative", "is required (or name a preset that has one)")
    merged = merge_settings(preset=base, overrides=given, tags=parse_tags(values.get("tags")))
    merged.setdefault("model", services.default_model)
    return GenerationRequest.from_dict(merged)


def _component(name: str, spec: Setting) -> Any:
    """The hidden input of one parameter: numbers, text (choices and on/off too), JSON or a tick box."""
    if spec.kind in ("int", "float"):
        return gr.Number(None, label=name)
    if spec.kind in ("tags", "adapters"):
        return gr.JSON({} if spec.kind == "tags" else [], label=name)
    if spec.kind == "bool" and not spec.unset and not spec.same:  # "anyway": false unless ticked
        return gr.Checkbox(False, label=name)
    return gr.Textbox("", label=name)


def build() -> dict[str, Any]:
    """The endpoint's hidden components: its parameters (by name) and its two outputs."""
    settings = api_settings()
    with gr.Column(visible=False, elem_id="generate-api"):
        parts: dict[str, Any] = {name: gr.Textbox("", label=name) if name == "preset"
                                 else gr.Checkbox(False, label=name) if name == "preview"
                                 else _component(name, settings[name][1]) for name in parameter_names()}
        parts["video"] = gr.File(label="video")  # a File: the client gets the mp4 path itself
        parts["settings"] = gr.JSON(label="settings")
        parts["button"] = gr.Button("generate")
        parts["preview_job"] = gr.Number(None, label="job", precision=0)
        parts["preview_image"] = gr.Image(None, label="preview", type="filepath")
        parts["preview_button"] = gr.Button("job preview")
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

    names = parameter_names()
    # The handler's signature names every parameter (Gradio's API page and gradio_client read it);
    # the request and progress come last, filled in by Gradio.
    signature = inspect.Signature([
        *(inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names),
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                          annotation=gr.Request | None),
        inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()),
    ])

    def generate(*args: Any, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        """Make one clip: narrative and tags (a dict, or a list of "field=value"), optionally a preset (id or
        name), a model and any setting by its CLI flag's name (frames, negative, cache, ...; `anyway`: despite
        an unusual tag pair); returns the mp4 and its settings (history id, seed, request, timings)."""
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        values = dict(call.arguments)
        who, progress = values.pop("request"), values.pop("progress")
        viewer = require_creator(services, who)
        wants = values.pop("preview", None)
        try:
            preview = wants_preview(wants)
            job = build_request(services, values, services.presets_for(viewer))
        except InvalidRequest as exc:  # before ValueError, which it is too
            refuse(ui_message(exc, tax))
        except (TypeError, ValueError) as exc:
            refuse(f"request: {exc}")
        job_id = runner.submit(job, viewer=viewer, source="api", preview=bool(preview))
        return on_gpu(job_id, progress)

    generate.__signature__ = signature  # type: ignore[attr-defined]
    generate.__annotations__ = {"request": gr.Request | None, "return": tuple[str, dict[str, Any]]}
    handler = refusals("Generate", outputs=2, taxonomy=tax)(generate)
    parts["button"].click(handler, inputs=[parts[k] for k in names], outputs=[parts["video"], parts["settings"]],
                          api_name="generate", concurrency_limit=1, concurrency_id="gpu")

    @refusals("Preview", outputs=1, taxonomy=tax)
    def job_preview(job: float | None, request: gr.Request) -> str | None:
        """The live preview (an animated WebP) of one of your running jobs, or nothing: none yet, or the job
        ended. A job gets previews when `/generate` is called with preview=on (see `/queue` for its number)."""
        if job is None:
            refuse("job: give the number of a running job of yours")
        record = history.get(int(job))
        services.access.check(require_creator(services, request), record, "run")
        path = runner.preview_of(record.id)
        return None if path is None else str(path)

    parts["preview_button"].click(job_preview, inputs=parts["preview_job"], outputs=parts["preview_image"],
                                  api_name="job_preview", show_progress="hidden")
