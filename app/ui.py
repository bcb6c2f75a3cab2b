"""The one place that assembles the studio: header, banners, the Create, Presets, History, Rate and Eval tabs.

`build_app` takes the services (database, runner, taxonomy, presets) and returns a `StudioApp`
whose `launch` adds what Gradio 6 takes at launch time (theme, CSS, the media folder as an
allowed path). Tests launch it the same way `python app.py` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from engine.core.errors import EngineError
from engine.core.mini_model import shipped as mini_shipped
from engine.core.registry import MINI_ID, PREVIEW_ID

from . import adapters
from .services.context import DEFAULT_DOWNLOAD_MODEL, StudioServices
from .services.downloads import downloads_dir
from .services.identity import VisitorCookieMiddleware
from .tabs import create as create_tab
from .tabs import eval as eval_tab
from .tabs import history as history_tab
from .tabs import rating as rating_tab
from .tabs import presets as presets_tab

CSS_PATH = Path(__file__).with_name("studio.css")
TITLE = "AniMatrix Studio"


@dataclass
class StudioApp:
    blocks: gr.Blocks
    services: StudioServices
    create: create_tab.CreateTab
    history: history_tab.HistoryTab
    banner: gr.Row
    rating: rating_tab.RatingTab | None = None
    eval: eval_tab.EvalTab | None = None

    def launch(self, **kwargs: Any) -> tuple[Any, str, str]:
        settings = self.services.settings
        # The media folder (clip names carry a random part) and this studio's own downloads folder.
        kwargs.setdefault("allowed_paths", [str(settings.media_dir), str(downloads_dir(settings))])
        kwargs["app_kwargs"] = with_visitor_cookie(kwargs.get("app_kwargs"))
        if self.services.access.scope == "owned":  # a hosted studio: uploads spend the host's disk
            from starlette.middleware import Middleware

            from .services.uploads import UploadGuard

            middleware = kwargs["app_kwargs"].get("middleware") or []
            kwargs["app_kwargs"]["middleware"] = [*middleware, Middleware(UploadGuard)]
        kwargs.setdefault("footer_links", ["api", "settings"])
        kwargs.setdefault("show_error", True)
        self.blocks.queue(default_concurrency_limit=4)
        kwargs = rating_tab.launch_kwargs(self.services, kwargs)  # its script; `auth="raters"`: the accounts
        css = CSS_PATH.read_text(encoding="utf-8") + "\n" + rating_tab.css_text()
        return self.blocks.launch(theme=theme(), css=css, **kwargs)

    def close(self) -> None:
        self.blocks.close()
        self.services.close()


def with_visitor_cookie(app_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Gradio's `app_kwargs` plus the middleware that gives each browser its visitor cookie."""
    from starlette.middleware import Middleware

    out = dict(app_kwargs or {})
    out["middleware"] = [*(out.get("middleware") or []), Middleware(VisitorCookieMiddleware)]
    return out


CREATOR_HEADER = ("Anime clips from production tags and a narrative. Pick Style, Motion, Camera and VFX, describe "
                  "the scene, generate.")


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue="rose", secondary_hue="indigo", neutral_hue="slate")


def banner_text(services: StudioServices) -> str:
    spec = services.default_spec()
    name = spec.label if spec is not None else services.default_model
    model_id = spec.id if spec is not None and spec.local_path is None else DEFAULT_DOWNLOAD_MODEL
    preview = ("Meanwhile you can try the built-in preview model: it runs anywhere, but its weights are random, "
               "so its clips are noise.")
    if mini_shipped():
        preview = ("Meanwhile you can try the built-in **mini** model, trained here on the studio's own procedural "
                   "anime world (32x32 clips of 17 frames, seconds on a CPU; docs/world.md says how well it follows "
                   "its tags), or the preview model, which runs anywhere but has random weights: its clips are noise.")
    if services.settings.offline:
        return (f"**The default model's weights are not on this machine** ({name}), and they cannot be downloaded "
                f"while offline. On a machine with network run `python -m engine download {model_id}`, then "
                f"restart the studio. {preview}")
    return (f"**The default model's weights are not downloaded yet** ({name}). The first Generate downloads them "
            f"(several GB), or run `python -m engine download {model_id}` beforehand. {preview}")


def recovered_text(count: int) -> str:
    return (f"{count} generation{'s were' if count != 1 else ' was'} cut off when the studio last stopped; "
            "marked failed in the History. Queued jobs carry on.")


def hide_banner() -> Any:
    # The model note still names the download command when the default model is picked again.
    gr.Info("The preview model is selected: its clips are noise, made to check that the studio works.", duration=4)
    return gr.update(visible=False)


def hide_banner_for_mini() -> Any:
    gr.Info("The mini model is selected: 32x32 clips of 17 frames, trained on the studio's own world.", duration=4)
    return gr.update(visible=False)


def build_app(services: StudioServices) -> StudioApp:
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as blocks:
        with gr.Row(elem_id="header"):
            header = gr.Markdown(f"## {TITLE}\n{CREATOR_HEADER}", elem_id="header-text")
        with gr.Row(visible=services.default_weights_missing(), elem_id="offline-banner", elem_classes=["banner"],
                    equal_height=True) as banner:
            gr.Markdown(banner_text(services), scale=4, min_width=240)
            # Offered once its trained weights ship in assets/mini (python -m engine world train-mini --ship).
            use_mini = gr.Button("Use the mini model", size="sm", variant="primary", scale=0,
                                 min_width=170, elem_id="use-mini", visible=mini_shipped())
            use_preview = gr.Button("Use the preview model", size="sm", variant="secondary", scale=0,
                                    min_width=190, elem_id="use-preview")
        if services.recovered:
            gr.Markdown(recovered_text(services.recovered), elem_classes=["banner", "muted"], elem_id="recovered")
        with gr.Tabs(selected="create", elem_id="main-tabs") as tabs:
            # render_children: "Reuse settings" fills the Create tab while History is the one shown.
            with gr.Tab("Create", id="create", elem_id="tab-create", render_children=True) as create_page:
                create = create_tab.build(services)
            with gr.Tab("Presets", id="presets", elem_id="tab-presets", render_children=True) as presets_page:
                presets = presets_tab.build(services)
                presets_tab.wire(presets, services, create=create, tabs=tabs, presets_tab=presets_page)
            with gr.Tab("History", id="history", elem_id="tab-history", render_children=True) as hist_tab:
                history = history_tab.build(services)
            with gr.Tab("Rate", id="rate", elem_id="tab-rate") as rate_tab:
                rating = rating_tab.build(services)
            with gr.Tab("Eval", id="eval", elem_id="tab-eval") as eval_page:
                evaluation = eval_tab.build(services)

        create_tab.wire(create, services)
        rating_tab.wire(rating, services, blocks=blocks, main_tab=rate_tab)
        # Pairs are sent as the admin signed in to the Rate tab: its session state is the one input shared.
        eval_tab.wire(evaluation, services, session=rating.session, eval_page=eval_page, blocks=blocks)
        preset_reset = [create.preset, create.preset_snapshot, create.preset_badge]

        def reuse_values(record: Any) -> list[Any]:
            form = adapters.form_from_request(record.request)
            # The status line says what the form now holds (it used to keep the previous job's line).
            loaded = f"Settings of History entry #{record.id} loaded (seed {record.seed}); Generate makes it again."
            return create_tab.fill_from(services, form) + ["", None, "", loaded]

        history_tab.wire(history, services, tabs=tabs, history_tab=hist_tab,
                         reuse_outputs=[*create.fill_outputs(), *preset_reset, create.status],
                         reuse_values=reuse_values)
        # A rater (`--auth raters`, role rater) gets the Rate tab only; the handlers refuse them anyway.
        blocks.load(rating_tab.studio_view(services, TITLE), outputs=[create_page, presets_page, hist_tab, banner, tabs, header],
                    show_progress="hidden", api_visibility="private")
        def own_presets(request: gr.Request) -> Any:  # each visitor's dropdown lists their own presets
            try:
                return gr.update(choices=create_tab.preset_choices(services.library_for(request)))
            except EngineError:  # a rater: the Create tab is hidden from them
                return gr.skip()

        blocks.load(own_presets, outputs=create.preset,
                    show_progress="hidden", api_visibility="private")
        use_preview.click(create_tab.use_model(services, PREVIEW_ID), inputs=create.inputs(),
                          outputs=create.fill_outputs(), api_name="use_preview").then(
            hide_banner, outputs=banner, api_visibility="private")
        use_mini.click(create_tab.use_model(services, MINI_ID), inputs=create.inputs(),
                       outputs=create.fill_outputs(), api_name="use_mini").then(
            hide_banner_for_mini, outputs=banner, api_visibility="private")
    return StudioApp(blocks, services, create, history, banner, rating, evaluation)
