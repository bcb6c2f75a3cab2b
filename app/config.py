"""Launch options of `python app.py`: command-line flags over `ANIMATRIX_*` environment variables.

Parsing imports nothing heavy, so a bad flag is reported in one line (exit status 2) before
Gradio or the engine load. A flag always wins over its environment variable; an option given
neither way is left to Gradio (`None`), which honours its own GRADIO_SERVER_NAME/PORT, the
variables Hugging Face Spaces sets.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NoReturn, Sequence

PROG = "app.py"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
RATER_AUTH = "raters"  # `--auth raters`: log in with a rating account (see app.tabs.rating)
HISTORY_CHOICES = ("auto", "shared", "owned")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# An owned (hosted) studio's per-user caps unless flags say otherwise: four jobs at a time, and
# about 60 default-size clips (832 x 480 x 81 = 32 megapixel-frames) an hour.
DEFAULT_MAX_QUEUED = 4
DEFAULT_MEGAPIXEL_FRAMES_PER_HOUR = 2000


class ConfigError(Exception):
    """A flag or environment variable the studio cannot use; the message is one line."""


@dataclass(frozen=True)
class LaunchOptions:
    host: str | None = None
    port: int | None = None
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    data_dir: Path | None = None
    default_model: str | None = None
    device: str | None = None
    auth_raters: bool = False
    max_upload_mb: int = 16  # presets and tag files are small; a bound keeps a public Space's disk safe
    history: str = "auto"  # auto | shared | owned: see `history_scope`
    admins: tuple[str, ...] = ()  # --auth U:P names that see and manage everything
    max_queued_per_user: int | None = None  # None: the scope's default
    max_megapixel_frames_per_hour: int | None = None  # None: the scope's default; 0: no cap
    allow_local_models: bool | None = None  # None: allowed in a shared studio only
    allow_downloads: bool | None = None  # None: only a private studio (shared history, no login) downloads
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For names the client; none by default
    on_space: bool = False  # SPACE_ID is set: a Hugging Face Space is public by default
    database_url: str | None = None  # a shared PostgreSQL database instead of the data folder's SQLite file
    no_worker: bool = False  # run no jobs here: `python -m engine worker` processes do
    media_dir: Path | None = None  # the media store (clips); None: the data folder's media/
    gradio_host: str | None = None  # GRADIO_SERVER_NAME, which Gradio uses when --host is not given

    @property
    def history_scope(self) -> str:
        """"shared" for a studio only this machine reaches (no sign-in, loopback, no --share, not a
        Space): one person's studio, everyone sees everything. "owned" otherwise."""
        if self.history != "auto":
            return self.history
        private = (not self.auth and not self.auth_raters and not self.share and not self.on_space
                   and (self.host or self.gradio_host or "127.0.0.1") in LOOPBACK)
        return "shared" if private else "owned"

    def usage_limits(self) -> tuple[int | None, int | None]:
        """(jobs queued at once, width × height × frames per hour) per user; None: no cap."""
        owned = self.history_scope == "owned"
        queued = self.max_queued_per_user if self.max_queued_per_user is not None else (
            DEFAULT_MAX_QUEUED if owned else None)
        mp = self.max_megapixel_frames_per_hour
        mp = mp if mp is not None else (DEFAULT_MEGAPIXEL_FRAMES_PER_HOUR if owned else 0)
        return (queued or None), (mp * 1_000_000 if mp else None)

    @property
    def local_models_allowed(self) -> bool:
        return self.allow_local_models if self.allow_local_models is not None else self.history_scope == "shared"

    @property
    def downloads_allowed(self) -> bool:
        """Whether a visitor's request may make this studio download weights from the hub."""
        if self.allow_downloads is not None:
            return self.allow_downloads
        return self.history_scope == "shared" and not self.auth and not self.auth_raters

    @property
    def gradio_auth(self) -> list[tuple[str, str]] | str | None:
        """What `StudioApp.launch(auth=...)` takes: the pairs, or RATER_AUTH for the rating accounts."""
        if self.auth_raters:
            return RATER_AUTH
        return list(self.auth) or None


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing its usage block, so main() prints one line."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="AniMatrix Studio: anime video generation in the browser.")
    p.add_argument("--host", help="address to listen on, e.g. 0.0.0.0 for the network (env ANIMATRIX_HOST; "
                                  "default 127.0.0.1)")
    p.add_argument("--port", help="port to listen on (env ANIMATRIX_PORT; default 7860)")
    p.add_argument("--share", action=argparse.BooleanOptionalAction, default=None,
                   help="also open a temporary public gradio.live link (env ANIMATRIX_SHARE=1)")
    p.add_argument("--auth", help="require a login, USER:PASSWORD; several as U1:P1,U2:P2; or 'raters' to log in "
                                  "with the rating accounts (env ANIMATRIX_AUTH)")
    p.add_argument("--data-dir", help="folder for the history database, clips and presets "
                                      "(env ANIMATRIX_DATA_DIR; on Spaces use /data)")
    p.add_argument("--default-model", help="model selected when the page opens (env ANIMATRIX_DEFAULT_MODEL)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="device to run on (env ANIMATRIX_DEVICE)")
    p.add_argument("--max-upload-mb", help="largest file a browser may upload, in MB (env ANIMATRIX_MAX_UPLOAD_MB; "
                                           "default 16)")
    p.add_argument("--history", choices=HISTORY_CHOICES, default=None,
                   help="who sees which clips: 'shared' (everyone sees all, for a private studio), 'owned' (each "
                        "user their own; admins all) or 'auto': shared only without --auth/--share on 127.0.0.1 "
                        "(env ANIMATRIX_HISTORY)")
    p.add_argument("--shared-history", action="store_const", const="shared", dest="history",
                   help="the same as --history shared")
    p.add_argument("--admins", help="with --auth U:P, the names that see and manage every user's clips, "
                                    "comma-separated (env ANIMATRIX_ADMINS)")
    p.add_argument("--max-queued-per-user", help="jobs one user may have queued or running at once; 0: no cap "
                                                 f"(env ANIMATRIX_MAX_QUEUED_PER_USER; default {DEFAULT_MAX_QUEUED} "
                                                 "for an owned history, none for a shared one)")
    p.add_argument("--max-megapixel-frames-per-hour",
                   help="width x height x frames one user may queue per hour, in millions, at up to 50 steps "
                        "(more steps count more); anonymous visitors share one budget; 0: no cap (env "
                        f"ANIMATRIX_MAX_MEGAPIXEL_FRAMES_PER_HOUR; default {DEFAULT_MEGAPIXEL_FRAMES_PER_HOUR} "
                        "for an owned history, none for a shared one)")
    p.add_argument("--database-url", help="a shared PostgreSQL database, postgresql+psycopg://USER@HOST/DB "
                                          "(env ANIMATRIX_DATABASE_URL; default: the data folder's SQLite file)")
    p.add_argument("--media-dir", help="where clips live, e.g. a mount the workers share (env ANIMATRIX_MEDIA_DIR; "
                                       "default: the data folder's media/)")
    p.add_argument("--no-worker", action="store_true",
                   help="run no jobs in this process: `python -m engine worker` processes run the queue "
                        "(e.g. a rating front-end without a GPU)")
    p.add_argument("--allow-local-models", action=argparse.BooleanOptionalAction, default=None,
                   help="let the page load models and transformer files from any folder of this machine, not "
                        "only under the data folder (default: yes for a shared history, no for an owned one)")
    p.add_argument("--allow-downloads", action=argparse.BooleanOptionalAction, default=None,
                   help="let a visitor's request download a model's weights from the hub (default: yes for a "
                        "private studio, no for a hosted one, where admins run `python -m engine download`)")
    p.add_argument("--trusted-proxies", help="addresses of your reverse proxies, comma-separated: only requests "
                                             "from them may name the client in X-Forwarded-For (env "
                                             "ANIMATRIX_TRUSTED_PROXIES; default none: the peer is the client)")
    return p


def parse_port(text: str, where: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: must be a whole number from 1 to 65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{where}: must be from 1 to 65535, got {port}")
    return port


def parse_bool(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{where}: must be 1/true/yes or 0/false/no, got {text!r}")


def parse_auth(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """'user:pass' or 'u1:p1,u2:p2'; the password may itself hold ':' (split at the first one)."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError(f"{where}: must be USER:PASSWORD (several separated by commas), got {item.strip()!r}")
        pairs.append((user.strip(), password))
    return tuple(pairs)


def parse_options(argv: Sequence[str] | None, env: Mapping[str, str]) -> LaunchOptions:
    args = build_parser().parse_args(argv)

    def pick(flag: str | None, name: str) -> tuple[str | None, str]:
        if flag is not None:
            return flag, f"--{name.lower().replace('_', '-')}"
        raw = env.get(f"ANIMATRIX_{name}")
        return (raw if raw not in (None, "") else None), f"ANIMATRIX_{name}"

    host, where = pick(args.host, "HOST")
    if host is not None and not host.strip():
        raise ConfigError(f"{where}: must be an address such as 127.0.0.1 or 0.0.0.0")
    port_text, port_where = pick(args.port, "PORT")
    share = args.share
    if share is None:
        share = parse_bool(env.get("ANIMATRIX_SHARE", ""), "ANIMATRIX_SHARE")
    auth_text, auth_where = pick(args.auth, "AUTH")
    raters = auth_text is not None and auth_text.strip().lower() == RATER_AUTH
    data_text, _ = pick(args.data_dir, "DATA_DIR")
    upload_text, upload_where = pick(args.max_upload_mb, "MAX_UPLOAD_MB")
    history, history_where = pick(args.history, "HISTORY")
    if history is not None and history not in HISTORY_CHOICES:
        raise ConfigError(f"{history_where}: must be one of {', '.join(HISTORY_CHOICES)}, got {history!r}")
    admins_text, _ = pick(args.admins, "ADMINS")
    queued_text, queued_where = pick(args.max_queued_per_user, "MAX_QUEUED_PER_USER")
    mpf_text, mpf_where = pick(args.max_megapixel_frames_per_hour, "MAX_MEGAPIXEL_FRAMES_PER_HOUR")
    return LaunchOptions(
        history=history or "auto",
        admins=tuple(a.strip() for a in (admins_text or "").split(",") if a.strip()),
        max_queued_per_user=parse_count(queued_text, queued_where, 10_000) if queued_text is not None else None,
        max_megapixel_frames_per_hour=(parse_count(mpf_text, mpf_where, 10**9) if mpf_text is not None else None),
        allow_local_models=args.allow_local_models,
        allow_downloads=args.allow_downloads,
        trusted_proxies=parse_proxies(*pick(args.trusted_proxies, "TRUSTED_PROXIES")),
        on_space=bool(env.get("SPACE_ID")),
        database_url=pick(args.database_url, "DATABASE_URL")[0],
        media_dir=Path(media_text).expanduser() if (media_text := pick(args.media_dir, "MEDIA_DIR")[0]) else None,
        no_worker=bool(args.no_worker),
        gradio_host=env.get("GRADIO_SERVER_NAME") or None,
        host=host.strip() if host else None,
        port=parse_port(port_text, port_where) if port_text is not None else None,
        share=share,
        auth=parse_auth(auth_text, auth_where) if auth_text is not None and not raters else (),
        auth_raters=raters,
        data_dir=Path(data_text).expanduser() if data_text else None,
        default_model=args.default_model,
        device=args.device,
        max_upload_mb=parse_upload_mb(upload_text, upload_where) if upload_text is not None else 16,
    )


def parse_proxies(text: str | None, where: str) -> tuple[str, ...]:
    """Proxy addresses (IPs or networks) as uvicorn's forwarded_allow_ips takes them."""
    import ipaddress

    out = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{where}: {item!r} is not an IP address or network") from None
        out.append(item)
    return tuple(out)


def parse_count(text: str, where: str, most: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: must be a whole number from 0 (no cap) to {most}, got {text!r}") from None
    if not 0 <= value <= most:
        raise ConfigError(f"{where}: must be from 0 (no cap) to {most}, got {value}")
    return value


def parse_upload_mb(text: str, where: str) -> int:
    try:
        mb = int(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: must be a whole number of MB from 1 to 4096, got {text!r}") from None
    if not 1 <= mb <= 4096:
        raise ConfigError(f"{where}: must be from 1 to 4096 MB, got {mb}")
    return mb
