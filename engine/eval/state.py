"""Where an eval run keeps what it has done: a folder per run under ``<data dir>/eval/<run id>/``.

    run.json                      the suite as run (and its fingerprint): a resume must match it
    shards/state-I-of-N.json      one file per shard, rewritten atomically after every clip
    results.json                  `merge`: every shard's items in one file (what reports read first)
    report.md / .json / .html     `report`

One writer per state file (a shard process owns its own), each write atomic
(engine/core/toolkit/files.py), so a run killed at any moment leaves whole files behind.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.errors import InvalidRequest
from ..core.toolkit.files import write_json
from .suite import Suite

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STATE_RE = re.compile(r"^state-(\d+)-of-(\d+)\.json$")


def item_key(system: str, prompt: str, seed: int) -> str:
    return f"{system}|{prompt}|{seed}"


def _rank(item: Mapping[str, Any]) -> tuple[bool, int]:
    """Which of two copies of an item wins: finished over not, then the later rescoring (`rev`)."""
    return (item.get("status") == "done", int(item.get("rev", 0) or 0))


def default_run_id(suite: Suite) -> str:
    """The same suite gives the same run id, so running the same command again resumes it."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", suite.name).strip("-.")[:40] or "suite"
    return f"{slug}-{suite.fingerprint()[:8]}"


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)) <= 1024:
        raise InvalidRequest("--shard", f"must be I/N with 1 <= I <= N (e.g. 2/4), got '{text}'")
    return int(m.group(1)), int(m.group(2))


class RunFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.run_id = root.name

    @classmethod
    def of(cls, eval_dir: Path, run: str) -> "RunFolder":
        """A run by id (under the data dir's eval folder) or by the path of its folder."""
        path = Path(run).expanduser()
        if path.is_dir() and (path / "run.json").is_file():
            return cls(path)
        if not RUN_ID_RE.match(run):
            raise InvalidRequest("run", f"'{run}' is neither a run id (letters, digits, '_.-') nor a run folder")
        return cls(eval_dir / run)

    @property
    def exists(self) -> bool:
        return (self.root / "run.json").is_file()

    def meta(self) -> dict[str, Any]:
        if not self.exists:
            raise InvalidRequest("run", f"no eval run at {self.root} (run `python -m engine eval run` first)")
        return json.loads((self.root / "run.json").read_text(encoding="utf-8"))

    def start(self, suite: Suite) -> None:
        """Write run.json, or check that the run there was made with this very suite."""
        fingerprint = suite.fingerprint()
        if self.exists:
            old = self.meta().get("fingerprint")
            if old != fingerprint:
                raise InvalidRequest("--run", f"run '{self.run_id}' was made with a different suite (fingerprint "
                                              f"{old}, this one {fingerprint}); give another --run name")
            return
        write_json(self.root / "run.json", {"run": self.run_id, "fingerprint": fingerprint, "source": suite.source,
                                            "suite": suite.to_dict()}, indent=1)

    def state_path(self, shard: tuple[int, int]) -> Path:
        return self.root / "shards" / f"state-{shard[0]}-of-{shard[1]}.json"

    def read_state(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise InvalidRequest("state", f"{path} is not valid JSON; delete it to redo its clips") from None
        items = data.get("items") if isinstance(data, dict) else None
        return dict(items) if isinstance(items, dict) else {}

    def write_state(self, shard: tuple[int, int], items: Mapping[str, Any]) -> None:
        write_json(self.state_path(shard), {"run": self.run_id, "shard": list(shard), "items": dict(items)})

    def state_files(self) -> list[Path]:
        folder = self.root / "shards"
        return sorted(p for p in folder.glob("state-*.json") if STATE_RE.match(p.name)) if folder.is_dir() else []

    def all_items(self) -> dict[str, Any]:
        """Every shard's items (finished ones win over failed ones, rescored ones over older), plus merged results."""
        out: dict[str, Any] = {}
        sources: list[Path] = [self.root / "results.json"] if (self.root / "results.json").is_file() else []
        for path in [*sources, *self.state_files()]:
            for key, item in self.read_state(path).items():
                if key not in out or _rank(item) > _rank(out[key]):
                    out[key] = item
        return out

    def merge(self, others: Iterable["RunFolder"]) -> dict[str, Any]:
        """Fold other folders' shards of the same run into results.json here (same suite only)."""
        mine = self.meta().get("fingerprint")
        items = self.all_items()
        for other in others:
            if other.meta().get("fingerprint") != mine:
                raise InvalidRequest("merge", f"{other.root} holds a different suite than {self.root}; "
                                              "only shards of one run merge")
            for key, item in other.all_items().items():
                if key not in items or _rank(item) > _rank(items[key]):
                    items[key] = item
        write_json(self.root / "results.json", {"run": self.run_id, "items": items})
        return items


__all__ = ["RunFolder", "default_run_id", "item_key", "parse_shard"]
