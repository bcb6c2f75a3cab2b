"""Password guessing is slowed per account and per client address; hashes get stronger on login."""
from __future__ import annotations

import asyncio

import pytest

from app.config import LaunchOptions
from app.main import _CLIENT_ADDRESS, build_auth, password_table_check, throttled_auth
from engine.rating import accounts
from engine.rating.accounts import LoginThrottle, LoginThrottled, guarded_login

PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def stored() -> accounts.PasswordHash:
    return accounts.hash_password(PASSWORD, n=2**10)  # cheap cost: this file is about the throttle


def test_100_wrong_logins_cost_a_minute_then_the_right_password_works(stored: accounts.PasswordHash) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    checks: list[str] = []

    def check(name: str, password: str) -> bool:
        checks.append(password)
        return name == "aki" and accounts.verify_password(password, stored)

    enforced = 0.0
    for i in range(100):
        wait = throttle.retry_after("aki", "203.0.113.7")
        if wait > 0:
            with pytest.raises(LoginThrottled) as err:  # refused without running the check
                guarded_login(check, "aki", f"guess {i}", address="203.0.113.7", throttle=throttle)
            assert err.value.retry_after_s == wait
            enforced += wait
            clock.advance(wait)
        assert guarded_login(check, "aki", f"guess {i}", address="203.0.113.7", throttle=throttle) is False
    assert enforced >= 60, enforced
    assert len(checks) == 100  # every guess that ran was one the attacker waited for
    clock.advance(throttle.retry_after("aki", "203.0.113.7"))
    assert guarded_login(check, "aki", PASSWORD, address="203.0.113.7", throttle=throttle) is True


def test_lockout_message_is_the_same_for_real_and_unknown_names() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, free_failures=1)
    known = password_table_check([("aki", PASSWORD)])
    messages = []
    for name in ("aki", "nobody-here"):
        for _ in range(2):
            assert guarded_login(known, name, "wrong password", throttle=throttle) is False
        with pytest.raises(LoginThrottled) as err:
            guarded_login(known, name, PASSWORD, throttle=throttle)
        messages.append(str(err.value))
    assert messages[0] == messages[1] == "too many failed sign-ins; try again in 1 s"


def test_spraying_names_from_one_address_is_throttled_other_addresses_are_not() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, address_free_failures=20)
    check = password_table_check([("aki", PASSWORD)])
    for i in range(21):  # one try per name: the per-account limit never triggers
        guarded_login(check, f"user{i}", "wrong password", address="198.51.100.1", throttle=throttle)
    with pytest.raises(LoginThrottled):
        guarded_login(check, "aki", PASSWORD, address="198.51.100.1", throttle=throttle)
    assert guarded_login(check, "aki", PASSWORD, address="198.51.100.2", throttle=throttle) is True


def test_success_clears_the_account_not_the_address() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, free_failures=2, address_free_failures=2)
    check = password_table_check([("aki", PASSWORD), ("mine", PASSWORD)])
    for _ in range(2):
        guarded_login(check, "aki", "wrong password", address="a", throttle=throttle)
    assert guarded_login(check, "aki", PASSWORD, address="a", throttle=throttle)
    assert throttle.retry_after("aki") == 0.0
    guarded_login(check, "other", "wrong password", address="a", throttle=throttle)  # 3rd failure from "a"
    assert throttle.retry_after("mine", "a") > 0  # the attacker's own good login did not reset "a"


def test_records_are_bounded_and_forgotten() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, max_tracked=100, forget_after_s=60)
    for i in range(1000):
        throttle.failed(f"random-{i}")
    assert len(throttle._records) <= 100
    for _ in range(5):
        throttle.failed("aki")
    assert throttle.retry_after("aki") > 0
    clock.advance(3600)
    assert throttle.retry_after("aki") == 0.0 and throttle.failed("aki") == 0.0  # a fresh start


def test_old_hashes_verify_and_ask_for_a_rehash() -> None:
    old = accounts.hash_password(PASSWORD, n=2**14)
    assert accounts.verify_password(PASSWORD, old) and accounts.needs_rehash(old)
    new = accounts.hash_password(PASSWORD)
    assert (new.n, new.r, new.p) == (2**17, 8, 1)
    assert accounts.verify_password(PASSWORD, new) and not accounts.verify_password("wrong", new)
    assert not accounts.needs_rehash(new)
    assert accounts.needs_rehash(new, n=2**18)


def test_costs_past_the_memory_cap_are_refused_in_one_line() -> None:
    with pytest.raises(accounts.InvalidRequest) as err:
        accounts.hash_password(PASSWORD, n=2**20, r=32)
    assert err.value.field == "kdf_n" and "MiB" in err.value.reason


def test_gradio_auth_callable_is_throttled_per_account_and_address() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock, free_failures=1)
    auth = throttled_auth(password_table_check([("ann", PASSWORD)]), throttle=throttle)

    async def attempt(password: str, address: str) -> bool:
        _CLIENT_ADDRESS.set(address)  # what ClientAddressMiddleware does for each request
        return await auth("ann", password)

    assert asyncio.run(attempt("nope nope", "192.0.2.1")) is False
    assert asyncio.run(attempt("nope nope", "192.0.2.1")) is False
    assert asyncio.run(attempt(PASSWORD, "192.0.2.1")) is False  # locked out: even the right password waits
    assert throttle.retry_after("", "192.0.2.1") == 0.0  # 2 failures are under the per-address limit
    assert asyncio.run(attempt(PASSWORD, "198.51.100.9")) is True  # the owner, elsewhere: not locked out
    clock.advance(throttle.retry_after("ann", "192.0.2.1"))
    assert asyncio.run(attempt(PASSWORD, "192.0.2.1")) is True


def test_build_auth_for_password_pairs() -> None:
    assert build_auth(LaunchOptions(), services=None) is None  # type: ignore[arg-type]
    auth = build_auth(LaunchOptions(auth=(("ann", "pw:1"), ("bob", "x"))), services=None)  # type: ignore[arg-type]
    assert auth is not None
    assert asyncio.run(auth("bob", "x")) and not asyncio.run(auth("ann", "x")) and not asyncio.run(auth("eve", "x"))
