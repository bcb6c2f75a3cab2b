"""`python app.py`: read flags and environment, open the studio, serve it in the browser.

Bad flags exit 2 with one line before anything heavy loads; a studio that cannot open its data
folder or port exits 1 with one line. See `app.config` for the flags.

Logins (`--auth U:P` or `--auth raters`) go through `build_auth`: one async callable, so the
scrypt check runs off the event loop, behind `engine.rating.accounts.LOGIN_THROTTLE` (back-off
per account name, and per client address, which `ClientAddressMiddleware` hands over because
Gradio only passes the auth callable a name and a password).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .config import PROG, ConfigError, LaunchOptions, parse_options

if TYPE_CHECKING:
    from engine.core.settings import Settings
    from engine.rating.accounts import LoginThrottle

    from .services.context import StudioServices

log = logging.getLogger(__name__)
_CLIENT_ADDRESS: ContextVar[str | None] = ContextVar("animatrix_client_address", default=None)
AuthCallable = Callable[[str, str], Awaitable[bool]]

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
                                                      default_model=options.default_model,
                                                      database_url=options.database_url,
                                                      media_root=options.media_dir)
        resolve_model(settings.default_model)  # a typo in the default model is a bad flag too
    except InvalidRequest as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    if options.default_model is None and not os.environ.get("ANIMATRIX_DEFAULT_MODEL"):
        from engine.core.loading import builtin_default

        builtin = builtin_default(settings)  # a CPU, or offline without the default's weights
        if builtin is not None:
            print(f"Default model: the built-in {builtin} model ({settings.default_model} cannot run here; "
                  "choose another with --default-model)", file=sys.stderr)
            settings = settings.with_overrides(default_model=builtin)
    # The studio's own messages (recovered jobs, background runs, one line per refused input);
    # libraries only when they warn, minus the harmless torchao kernel lines of a CPU machine.
    from engine.cli import quiet_libraries

    quiet_libraries()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(logging.INFO)
    # uvicorn (under Gradio) lets 127.0.0.1 rename the client with X-Forwarded-For unless told
    # otherwise; a tunnel or a local attacker would then pick the address the throttle sees.
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(options.trusted_proxies)
    return serve(settings, options)


def serve(settings: Settings, options: LaunchOptions) -> int:
    from .services.jobs import on_zero_gpu

    if on_zero_gpu():
        import spaces  # noqa: F401 - must be imported before torch touches CUDA on ZeroGPU

    from engine.core.errors import EngineError

    from .services.context import StudioServices
    from .ui import build_app

    try:
        services = StudioServices.create(settings, access=access_policy(options), identity=identity_of(options),
                                         executes=not options.no_worker)
    except EngineError as exc:
        return _error(str(exc), 1)
    log.info("history: %s%s", options.history_scope, "" if options.history_scope == "shared" else
             " (each user sees their own clips; --shared-history for a private studio)")
    app = build_app(services)
    auth = build_auth(options, services)
    extra: dict[str, Any] = {}
    if auth is not None:
        from starlette.middleware import Middleware

        extra["app_kwargs"] = {"middleware": [Middleware(ClientAddressMiddleware)]}
    try:
        # quiet: Gradio's own lines tell a script user to "set share=True in launch()"; ours name the flag.
        _, local_url, share_url = app.launch(server_name=options.host, server_port=options.port, share=options.share,
                                             auth=auth, auth_message="AniMatrix Studio: please log in.",
                                             max_file_size=f"{options.max_upload_mb}mb", quiet=True,
                                             prevent_thread_lock=True, **extra)
        print(launch_lines(local_url, share_url), flush=True)
        app.blocks.block_thread()
    except OSError as exc:  # e.g. the port is taken
        return _error(str(exc), 1)
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
    return 0


def launch_lines(local_url: str, share_url: str | None) -> str:
    """What the console says once the studio is up (instead of Gradio's launch() advice)."""
    lines = [f"AniMatrix Studio is running at {local_url}"]
    lines.append(f"Public link (--share): {share_url}" if share_url else
                 "For a temporary public link, start it with --share.")
    return "\n".join(lines)


def access_policy(options: LaunchOptions) -> Any:
    """Who sees which clips, the per-user caps and where weights may come from, from the flags."""
    from engine.access import AccessPolicy, UsageLimits

    queued, pixel_frames = options.usage_limits()
    scope = "owned" if options.history_scope == "owned" else "shared"
    return AccessPolicy(scope, UsageLimits(queued, pixel_frames), local_models=options.local_models_allowed,
                        downloads=options.downloads_allowed)


def identity_of(options: LaunchOptions) -> Any:
    from .services.identity import Identity

    mode = "raters" if options.auth_raters else "table" if options.auth else "none"
    return Identity(mode, frozenset(options.admins))


class ClientAddressMiddleware:
    """ASGI middleware that records the client's address for the auth callable of this request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client") if scope.get("type") == "http" else None
        token = _CLIENT_ADDRESS.set(str(client[0]) if client else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _CLIENT_ADDRESS.reset(token)


def password_table_check(pairs: Sequence[tuple[str, str]]) -> Callable[[str, str], bool]:
    """`--auth U:P,...` as a check: digests compared in constant time, unknown names included."""
    table = {user: hashlib.sha256(password.encode("utf-8")).digest() for user, password in pairs}
    missing = hashlib.sha256(os.urandom(32)).digest()

    def check(name: str, password: str) -> bool:
        given = hashlib.sha256(str(password).encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(given, table.get(name, missing)) and name in table

    return check


def throttled_auth(check: Callable[[str, str], bool], *, throttle: LoginThrottle | None = None,
                   per_address: bool = True) -> AuthCallable:
    """Gradio's `auth=` callable: `check` behind the login throttle, run in a worker thread."""
    from engine.rating.accounts import LoginThrottled, guarded_login

    async def auth(username: str, password: str) -> bool:
        address = _CLIENT_ADDRESS.get() if per_address else None
        try:
            return await asyncio.to_thread(guarded_login, check, username, password, address=address,
                                           throttle=throttle)
        except LoginThrottled as exc:  # Gradio can only say "Incorrect credentials"; the log says why
            log.warning("login refused from %s: %s", address or "an unknown address", exc)
            return False

    return auth


def build_auth(options: LaunchOptions, services: StudioServices) -> AuthCallable | None:
    """The throttled login for `--auth raters` (the accounts table) or `--auth U:P`; None without --auth."""
    check: Callable[[str, str], bool]
    if options.auth_raters:
        rating = services.rating
        if not rating.repository.list_raters():
            log.warning("--auth raters, but there are no rater accounts yet: create the first admin with "
                        "`python -m engine rating rater add NAME --role admin`")

        def check_rater(name: str, password: str) -> bool:
            return rating.authenticate(name, password) is not None

        check = check_rater
    elif options.auth:
        check = password_table_check(options.auth)
    else:
        return None
    # Through a --share tunnel every visitor arrives from the local tunnel client: no useful address.
    return throttled_auth(check, per_address=not options.share)


if __name__ == "__main__":
    raise SystemExit(main())
