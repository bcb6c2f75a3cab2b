"""`python app.py`: read flags and environment, open the studio, serve it in the browser.

Bad flags exit 2 with one line before anything heavy loads; a studio that cannot open its data
folder or port exits 1 with one line. See `app.config` for the flags.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Sequence

from .config import PROG, ConfigError, LaunchOptions, parse_options

if TYPE_CHECKING:
    from engine.core.settings import Settings

EXIT_BAD_INPUT = 2


def _error(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(argv, os.environ)
    except ConfigError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)

    from engine.core.errors import InvalidRequest
    from engine.core.registry import resolve_model
    from engine.core.settings import Settings

    try:
        settings = Settings.from_env().with_overrides(data_dir=options.data_dir, device=options.device,
                                                      default_model=options.default_model)
        resolve_model(settings.default_model)  # a typo in the default model is a bad flag too
    except InvalidRequest as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    # The studio's own messages (recovered jobs, background runs); libraries only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(logging.INFO)
    return serve(settings, options)


def serve(settings: Settings, options: LaunchOptions) -> int:
    from .services.jobs import on_zero_gpu

    if on_zero_gpu():
        import spaces  # noqa: F401 - must be imported before torch touches CUDA on ZeroGPU

    from engine.core.errors import EngineError

    from .services.context import StudioServices
    from .ui import build_app

    try:
        services = StudioServices.create(settings)
    except EngineError as exc:
        return _error(str(exc), 1)
    app = build_app(services)
    try:
        app.launch(server_name=options.host, server_port=options.port, share=options.share,
                   auth=options.gradio_auth, auth_message="AniMatrix Studio: please log in.")
    except OSError as exc:  # e.g. the port is taken
        return _error(str(exc), 1)
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
