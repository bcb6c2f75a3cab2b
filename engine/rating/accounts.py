"""Rater accounts: names, password rules, the password hash (scrypt from hashlib) and login throttling.

Each password gets its own random 16-byte salt; the cost parameters (n, r, p) are stored with
the hash, so raising them later only affects new hashes and old ones still verify (`needs_rehash`
tells the caller to re-hash at the next successful login). New hashes use N=2**17, r=8, p=1
(128 MiB, about half a second). Comparison is constant-time (`hmac.compare_digest`). An unknown
name runs no scrypt (a flood of made-up names must not cost the host 128 MiB each) but waits as
long as a real check takes (measured here), so timing does not tell which names exist.

At most `MAX_CONCURRENT_CHECKS` password checks run at once (`guarded_login`); the others wait
up to `CHECK_WAIT_S` for a slot and are then refused, so concurrent bad logins cannot exhaust the
host's memory.

`LoginThrottle` slows password guessing: after a few failures for one account from one client
address (more for the address alone), each further try must wait twice as long as the last (up
to 15 minutes). The back-off is per address and account, never global, so an attacker elsewhere
cannot lock the owner out. It keys on the name typed, whether or not such an account exists, and
its message is the same for both, so a lockout does not reveal which names are real.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import random
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..core.errors import EngineError, InvalidRequest, shown
from ..storage.repository.rating import PasswordHash

__all__ = ["CHECK_WAIT_S", "DEFAULT_N", "DEFAULT_P", "DEFAULT_R", "KDF_NAME", "LOGIN_THROTTLE",
           "MAX_CONCURRENT_CHECKS", "MIN_PASSWORD_CHARS", "LoginBusy", "LoginThrottle", "LoginThrottled",
           "check_name", "check_password", "guarded_login", "hash_password", "needs_rehash", "verify_nothing",
           "verify_password"]

KDF_NAME = "scrypt"
SALT_BYTES = 16
DIGEST_BYTES = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_EXPERIENCE_CHARS = 2000
DEFAULT_N, DEFAULT_R, DEFAULT_P = 2**17, 8, 1
_MAX_MAXMEM = 2**31 - 2  # hashlib refuses maxmem >= INT_MAX
_NAME_RE = re.compile(r"[^\W][\w.@+-]{0,63}")  # a letter/digit first; no spaces or punctuation runs


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name.strip()):
        raise InvalidRequest("name", "must be 1-64 letters, digits or . _ @ + - (no spaces), starting with a "
                                     f"letter or digit; got {shown(name)}")
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
    # OpenSSL needs 128*r*(n + 2 + p) bytes and refuses anything over 32 MiB unless told; N=2**17
    # needs 128 MiB. hashlib caps maxmem below 2 GiB, so costs beyond that are refused here.
    need = 128 * r * (n + 2 + p) + (1 << 20)
    if need > _MAX_MAXMEM:
        raise InvalidRequest("kdf_n", f"scrypt n={n}, r={r}, p={p} needs {need >> 20} MiB; at most "
                                      f"{_MAX_MAXMEM >> 20} MiB is allowed (lower kdf_n or kdf_r)")
    return hashlib.scrypt(_normalise(password), salt=salt, n=n, r=r, p=p, dklen=DIGEST_BYTES, maxmem=need)


def needs_rehash(stored: PasswordHash, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> bool:
    """Whether a hash that just verified was made with other costs than (n, r, p) and should be
    replaced by a fresh `hash_password` while the plain password is at hand."""
    return stored.kdf != KDF_NAME or (stored.n, stored.r, stored.p) != (n, r, p)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> PasswordHash:
    """A new salted hash of a password that passed `check_password`."""
    salt = os.urandom(SALT_BYTES)
    return PasswordHash(KDF_NAME, n, r, p, salt, _scrypt(password, salt, n, r, p))


# Seconds one scrypt check takes per cost (n, r, p), a running average of real checks: what an
# unknown name waits instead of running one.
_CHECK_SECONDS: dict[tuple[int, int, int], float] = {}


def _timed_scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    started = time.perf_counter()
    digest = _scrypt(password, salt, n, r, p)
    took = time.perf_counter() - started
    last = _CHECK_SECONDS.get((n, r, p))
    _CHECK_SECONDS[(n, r, p)] = took if last is None else 0.8 * last + 0.2 * took
    return digest


def verify_password(password: str, stored: PasswordHash) -> bool:
    if stored.kdf != KDF_NAME or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        return False
    candidate = _timed_scrypt(password, stored.salt, stored.n, stored.r, stored.p)
    return hmac.compare_digest(candidate, stored.digest)


@lru_cache(maxsize=4)
def _dummy(n: int, r: int, p: int) -> PasswordHash:
    # One real run per cost, once per process: it measures what a check takes.
    return PasswordHash(KDF_NAME, n, r, p, b"\0" * SALT_BYTES,
                        _timed_scrypt("no such account, only here to measure", b"\0" * SALT_BYTES, n, r, p))


def verify_nothing(password: str, *, n: int, r: int, p: int) -> bool:
    """Take as long as a real check of this cost (for unknown names) without running scrypt, so
    made-up names cost the host no memory; always False."""
    if (n, r, p) not in _CHECK_SECONDS:
        _dummy(n, r, p)
    time.sleep(_CHECK_SECONDS[(n, r, p)] * random.uniform(0.95, 1.05))
    return False


# -- login throttling -----------------------------------------------------------------------------
class LoginThrottled(EngineError):
    """A sign-in refused without checking the password, because of recent failures."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        # The same words for every name: a lockout must not tell whether the account exists.
        super().__init__(f"too many failed sign-ins; try again in {math.ceil(retry_after_s)} s")


class LoginBusy(LoginThrottled):
    """Every password-check slot stayed taken for `CHECK_WAIT_S`: refused without a check."""

    def __init__(self) -> None:
        EngineError.__init__(self, "the studio is busy checking other sign-ins; try again in a few seconds")
        self.retry_after_s = 5.0


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    """Exponential back-off per account name from one client address, and per address.

    The first `free_failures` failures of a name from an address (`address_free_failures` of an
    address, which may be shared by a whole office or proxy) cost nothing; each one after that
    blocks the key for `base_delay_s`, then twice that, and so on up to `max_delay_s`. There is
    no global per-account key when the address is known: guessing from one address does not lock
    the owner out of the account from theirs. Without an address (a --share tunnel) the name alone
    is the key. A success clears the name's records only, so an attacker's own account cannot wash
    an address clean. Records are
    forgotten `forget_after_s` after their last failure, and at most `max_tracked` are kept
    (oldest dropped first), so random names cannot fill the memory. `clock` is injectable so
    tests need not sleep. Thread-safe.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, free_failures: int = 3,
                 address_free_failures: int = 20, base_delay_s: float = 1.0, max_delay_s: float = 900.0,
                 forget_after_s: float = 3600.0, max_tracked: int = 10_000) -> None:
        self._clock = clock
        self._free = {"account": free_failures, "pair": free_failures, "address": address_free_failures}
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self.forget_after_s, self.max_tracked = forget_after_s, max_tracked
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every failure (an admin unlocking everyone; test isolation)."""
        with self._lock:
            self._records.clear()

    @staticmethod
    def _keys(account: str, address: str | None) -> list[tuple[str, str]]:
        name = account.strip().casefold()[:128] if isinstance(account, str) else ""
        if not address:
            return [("account", name)]
        where = str(address)[:64]
        return [("pair", f"{name}\n{where}"), ("address", where)]

    def _live(self, key: tuple[str, str], now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now - record.last_failure > self.forget_after_s and now >= record.blocked_until:
            del self._records[key]
            return None
        return record

    def retry_after(self, account: str, address: str | None = None) -> float:
        """Seconds until this name (from this address) may try again; 0.0 when it may now."""
        with self._lock:
            now = self._clock()
            waits = [r.blocked_until - now for k in self._keys(account, address) if (r := self._live(k, now))]
            return max([0.0, *waits])

    def failed(self, account: str, address: str | None = None) -> float:
        """Record a failed sign-in; returns the back-off it starts (0.0 while failures are free)."""
        with self._lock:
            now = self._clock()
            longest = 0.0
            for key in self._keys(account, address):
                record = self._live(key, now) or self._records.setdefault(key, _Record())
                record.failures += 1
                record.last_failure = now
                over = record.failures - self._free[key[0]]
                if over > 0:
                    delay = min(self.base_delay_s * 2.0 ** min(over - 1, 60), self.max_delay_s)
                    record.blocked_until = max(record.blocked_until, now + delay)
                    longest = max(longest, delay)
            if len(self._records) > self.max_tracked:
                self._prune(now)
            return longest

    def succeeded(self, account: str, address: str | None = None) -> None:
        """A correct password: the name starts afresh (the address keeps its count)."""
        with self._lock:
            self._records.pop(self._keys(account, None)[0], None)
            if address:
                self._records.pop(self._keys(account, address)[0], None)

    def _prune(self, now: float) -> None:
        for key in [k for k in self._records if self._live(k, now) is None]:
            self._records.pop(key, None)
        excess = len(self._records) - int(self.max_tracked * 0.9)
        if excess > 0:
            oldest = sorted(self._records, key=lambda k: self._records[k].last_failure)[:excess]
            for key in oldest:
                del self._records[key]


LOGIN_THROTTLE = LoginThrottle()  # one per process, shared by every sign-in form so they cannot be alternated

# Password checks at once: scrypt at the default cost takes 128 MiB, so this bounds what a
# burst of sign-ins can take from the host (one check, 128 MiB); the rest wait for the slot.
MAX_CONCURRENT_CHECKS = 1
CHECK_WAIT_S = 20.0
_CHECK_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)


def guarded_login(check: Callable[[str, str], bool], name: str, password: str, *, address: str | None = None,
                  throttle: LoginThrottle | None = None) -> bool:
    """Run `check(name, password)` behind the throttle: raises LoginThrottled (without calling
    `check`, so no scrypt is spent) while the name or the address must wait, LoginBusy when no
    check slot frees up in time; records the result."""
    throttle = LOGIN_THROTTLE if throttle is None else throttle
    wait = throttle.retry_after(name, address)
    if wait > 0:
        raise LoginThrottled(wait)
    if not _CHECK_SLOTS.acquire(timeout=CHECK_WAIT_S):
        raise LoginBusy()
    try:
        ok = bool(check(name, password))
    finally:
        _CHECK_SLOTS.release()
    if ok:
        throttle.succeeded(name, address)
    else:
        throttle.failed(name, address)
    return ok
