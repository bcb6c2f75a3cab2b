"""Side by side: two systems (of one run or of two runs), paired over (prompt, seed).

Each side is ``RUN`` or ``RUN:SYSTEM`` (the system may be left out when the run has one). Only
(prompt, seed) pairs both sides finished are compared. Per metric: both means, the mean paired
difference B - A with its bootstrap 95 % CI, and the sign-flip permutation p-value
(engine/eval/stats.py). A difference is reported as better/worse only when p < 0.05, in the
metric's own direction (flicker and P(failure): lower is better). Learned metrics both sides hold
(``learned.<metric>.<dim>``) are compared too. `eval compare --out X.png` draws B - A per metric.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InvalidRequest
from .report import higher_is_better, item_values, metric_label, metric_names
from .state import RunFolder
from .stats import paired_test


def resolve_side(eval_dir: Path, text: str) -> tuple[RunFolder, str]:
    """``RUN[:SYSTEM]`` as a run folder and a system id of it."""
    run, sep, system = text.rpartition(":") if ":" in text else (text, "", "")
    folder = RunFolder.of(eval_dir, run if sep else text)
    systems = [s["id"] for s in (folder.meta().get("suite") or {}).get("systems", [])]
    if not sep:
        if len(systems) != 1:
            raise InvalidRequest("compare", f"run {folder.run_id} has systems {', '.join(systems)}; "
                                            f"say which, e.g. {folder.run_id}:{systems[0]}")
        return folder, systems[0]
    if system not in systems:
        raise InvalidRequest("compare", f"run {folder.run_id} has no system '{system}'; it has {', '.join(systems)}")
    return folder, system


def system_values(folder: RunFolder, system: str) -> dict[tuple[str, int], dict[str, float]]:
    """One system's finished clips of a run: (prompt, seed) -> metric values."""
    return {(it["prompt"], int(it["seed"])): item_values(it) for it in folder.all_items().values()
            if it.get("system") == system and it.get("status") == "done"}


def compare_items(a: Mapping[tuple[str, int], Mapping[str, float]],
                  b: Mapping[tuple[str, int], Mapping[str, float]]) -> dict[str, Any]:
    shared = sorted(set(a) & set(b))
    out: dict[str, Any] = {"pairs": len(shared), "metrics": {}}
    for name in metric_names(n for k in shared for n in (*a[k], *b[k])):
        label, higher_better = metric_label(name), higher_is_better(name)
        keys = [k for k in shared if name in a[k] and name in b[k]]
        if not keys:
            continue
        result = paired_test([a[k][name] for k in keys], [b[k][name] for k in keys])
        verdict = "no significant difference"
        if result.significant:
            better = (result.diff > 0) == higher_better
            verdict = "B better" if better else "B worse"
        out["metrics"][name] = {"label": label, **result.to_dict(), "verdict": verdict}
    return out


def compare(eval_dir: Path, side_a: str, side_b: str) -> dict[str, Any]:
    fa, sa = resolve_side(eval_dir, side_a)
    fb, sb = resolve_side(eval_dir, side_b)
    if (fa.root, sa) == (fb.root, sb):
        raise InvalidRequest("compare", "A and B are the same system of the same run")
    result = compare_items(system_values(fa, sa), system_values(fb, sb))
    if result["pairs"] == 0:
        raise InvalidRequest("compare", f"{side_a} and {side_b} share no finished (prompt, seed) pair")
    return {"a": f"{fa.run_id}:{sa}", "b": f"{fb.run_id}:{sb}", **result}


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [f"# {result['a']} (A) vs {result['b']} (B)", "",
             f"{result['pairs']} (prompt, seed) pairs; paired sign-flip test, bootstrap 95 % CI of B - A.", "",
             "| metric | A | B | B - A [95 % CI] | p | verdict |", "|---|---|---|---|---|---|"]
    for m in result["metrics"].values():
        low, high = m["ci"]
        lines.append(f"| {m['label']} | {m['mean_a']:.3f} | {m['mean_b']:.3f} | {m['diff']:+.3f} "
                     f"[{low:+.3f}, {high:+.3f}] | {m['p_value']:.4f} | {m['verdict']} |")
    return "\n".join(lines) + "\n"


def render_html(result: Mapping[str, Any]) -> str:
    import html

    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(result['a'])} vs "
            f"{html.escape(result['b'])}</title><pre>{html.escape(render_markdown(result))}</pre>")


__all__ = ["compare", "compare_items", "render_html", "render_markdown", "resolve_side"]
