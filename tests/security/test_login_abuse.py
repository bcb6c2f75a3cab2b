"""Issue 36, finding 5 (logins that cannot be used as a weapon), played against real studios
(`python app.py`) over HTTP on 127.0.0.1 with the default scrypt cost (N=2**17, 128 MiB a check):

- 24 concurrent bad logins (real and made-up names) raise the server's memory by less than 200 MB:
  one password check runs at a time, and made-up names run no scrypt at all;
- a made-up name costs about the time of a real name's wrong password;
- X-Forwarded-For is not believed from a peer that is not a configured proxy, so rotating it does
  not dodge the per-address limit;
- wrong passwords from one address do not lock the owner out from another (per address+account
  back-off, not a global lockout).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from engine.rating.service import RatingService
from engine.rating.types import RatingConfig
from engine.storage.db import open_database

from support.app import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
REAL_COST = 2**17


class Studio:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def login(self, name: str, password: str, *, source: str = "127.0.0.1", forwarded: str | None = None) -> bool:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60) as client:
            got = client.post(f"{self.url}login", data={"username": name, "password": password}, headers=headers)
        return got.status_code == 200

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def _start(tmp_path: Path, *flags: str) -> Iterator[Studio]:
    port = free_port()
    log = tmp_path / "studio.log"
    env = {k: v for k, v in os.environ.items() if k not in ("ANIMATRIX_KDF_N", "FORWARDED_ALLOW_IPS")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--data-dir", str(tmp_path / "data"), "--port",
                             str(port), "--device", "cpu", "--default-model", "preview", *flags],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "is running at" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the studio did not start"
            time.sleep(0.2)
        yield Studio(proc, f"http://127.0.0.1:{port}/", log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def rater_studio(tmp_path: Path) -> Iterator[Studio]:
    """`--auth raters` with two accounts hashed at the real cost."""
    data = tmp_path / "data"
    data.mkdir()
    db = open_database(data / "studio.db")
    service = RatingService(db, data / "media", RatingConfig(kdf_n=REAL_COST))
    admin = service.create_first_admin("director", PASSWORD)
    service.add_rater(admin, "aki", PASSWORD)
    db.dispose()
    yield from _start(tmp_path, "--auth", "raters")


@pytest.fixture
def table_studio(tmp_path: Path) -> Iterator[Studio]:
    yield from _start(tmp_path, "--auth", f"ann:{PASSWORD}")


def test_24_concurrent_bad_logins_stay_under_200_mb(rater_studio: Studio) -> None:
    studio = rater_studio
    assert not studio.login("director", "warm-up wrong password")  # the first check's one-time costs
    time.sleep(1.0)
    before = studio.rss_mb()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], studio.rss_mb())
            time.sleep(0.01)

    names = [("director" if i % 2 else f"nobody{i}", f"wrong password {i}") for i in range(24)]
    results: list[bool] = []
    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=lambda n=n, p=p: results.append(studio.login(n, p))) for n, p in names]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    stop.set()
    sampler.join()
    grew = peak[0] - before
    print(f"24 concurrent bad logins: RSS {before:.0f} MB -> peak {peak[0]:.0f} MB (+{grew:.0f} MB)")
    assert len(results) == 24 and not any(results)
    assert grew < 200, f"+{grew:.0f} MB"
    assert studio.login("aki", PASSWORD)  # the studio still signs a real user in


def test_an_unknown_name_costs_the_time_of_a_wrong_password(rater_studio: Studio) -> None:
    studio = rater_studio
    studio.login("aki", "warm-up wrong password")
    known, unknown = [], []
    for i in range(2):  # under the free failures of each name from this address
        for name, times in (("aki", known), (f"ghost{i}", unknown)):
            started = time.perf_counter()
            assert not studio.login(name, f"wrong password {i}")
            times.append(time.perf_counter() - started)
    ratio = statistics.mean(unknown) / statistics.mean(known)
    print(f"known name {statistics.mean(known):.2f} s, unknown name {statistics.mean(unknown):.2f} s")
    assert 0.6 < ratio < 1.6, (known, unknown)


def test_forwarded_for_is_not_believed_and_the_owner_is_not_locked_out(table_studio: Studio) -> None:
    studio = table_studio
    for i in range(5):  # an attacker guesses ann's password from 127.0.0.1
        assert not studio.login("ann", f"guess {i}", forwarded=f"10.0.0.{i}")
    assert studio.login("ann", PASSWORD, source="127.0.0.2")  # ann, from her own address, gets in
    for i in range(21):  # made-up names, each with a new X-Forwarded-For: one address all the same
        assert not studio.login(f"user{i}", "guess", forwarded=f"10.1.{i}.1")
    assert not studio.login("ann", PASSWORD, forwarded="10.9.9.9")  # 127.0.0.1 is throttled now
    assert studio.login("ann", PASSWORD, source="127.0.0.2")
    assert "Traceback" not in studio.log.read_text(errors="replace")
