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
    return LaunchOptions(
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


def parse_upload_mb(text: str, where: str) -> int:
    try:
        mb = int(text.strip())
    except ValueError:
        raise ConfigError(f"{where}: must be a whole number of MB from 1 to 4096, got {text!r}") from None
    if not 1 <= mb <= 4096:
        raise ConfigError(f"{where}: must be from 1 to 4096 MB, got {mb}")
    return mb
