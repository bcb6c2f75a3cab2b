"""Rater accounts: names, password rules and the password hash (scrypt from hashlib).

Each password gets its own random 16-byte salt; the cost parameters (n, r, p) are stored with
the hash, so raising them later only affects new hashes and old ones still verify (and are
re-hashed at the next successful login). Comparison is constant-time (`hmac.compare_digest`),
and an unknown name costs the same scrypt run as a wrong password, so timing does not tell
which names exist.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from functools import lru_cache

from ..core.errors import InvalidRequest
from ..storage.repository.rating import PasswordHash

__all__ = ["KDF_NAME", "MIN_PASSWORD_CHARS", "check_name", "check_password", "hash_password", "verify_password",
           "verify_nothing"]

KDF_NAME = "scrypt"
SALT_BYTES = 16
DIGEST_BYTES = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_EXPERIENCE_CHARS = 2000
_NAME_RE = re.compile(r"[^\W][\w.@+-]{0,63}")  # a letter/digit first; no spaces or punctuation runs


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name.strip()):
        raise InvalidRequest("name", "must be 1-64 letters, digits or . _ @ + - (no spaces), starting with a "
                                     f"letter or digit; got {name!r}")
    return name.strip()


def _normalise(password: str) -> bytes:
    # NFC: the same password typed on two keyboards (composed vs decomposed accents) matches.
    return unicodedata.normalize("NFC", password).encode("utf-8")


def check_password(password: object) -> str:
    if not isinstance(password, str):
        raise InvalidRequest("password", "must be text")
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidRequest("password", f"must be at least {MIN_PASSWORD_CHARS} characters long")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidRequest("password", f"must be at most {MAX_PASSWORD_CHARS} characters long")
    if password != password.strip():
        raise InvalidRequest("password", "must not start or end with spaces (often a copy-paste slip)")
    return password


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem above the 128*n*r*p bytes scrypt needs, so large n is not refused by OpenSSL's default.
    return hashlib.scrypt(_normalise(password), salt=salt, n=n, r=r, p=p, dklen=DIGEST_BYTES,
                          maxmem=128 * n * r * (p + 1) + (1 << 20))


def hash_password(password: str, *, n: int = 2**14, r: int = 8, p: int = 1) -> PasswordHash:
    """A new salted hash of a password that passed `check_password`."""
    salt = os.urandom(SALT_BYTES)
    return PasswordHash(KDF_NAME, n, r, p, salt, _scrypt(password, salt, n, r, p))


def verify_password(password: str, stored: PasswordHash) -> bool:
    if stored.kdf != KDF_NAME or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        return False
    candidate = _scrypt(password, stored.salt, stored.n, stored.r, stored.p)
    return hmac.compare_digest(candidate, stored.digest)


@lru_cache(maxsize=4)
def _dummy(n: int, r: int, p: int) -> PasswordHash:
    return hash_password("no such account, only here to spend time", n=n, r=r, p=p)


def verify_nothing(password: str, *, n: int, r: int, p: int) -> bool:
    """Spend the time a real check would take (for unknown names); always False."""
    verify_password(password if isinstance(password, str) else "", _dummy(n, r, p))
    return False
