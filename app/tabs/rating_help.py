"""The Rate tab's keyboard help: every action an animator can do without the mouse."""
from __future__ import annotations


def _keys(*names: str) -> str:
    return " ".join(f"<kbd>{n}</kbd>" for n in names)


HELP = "  \n".join([
    "**Keys** (not while typing in a box) · Players: " + " · ".join([
        f"{_keys('Space')} play/pause", f"{_keys('←', '→')} one frame",
        f"{_keys('Shift')}+{_keys('←', '→')} or {_keys('PgUp', 'PgDn')} 10 frames", _keys("Home", "End"),
        f"{_keys('R')} speed 1×/½×/¼×", f"{_keys('L')} loop", f"{_keys('F')} flip A/B at this frame"]),
    "Judge: " + " · ".join([
        f"{_keys('1')}–{_keys('5')} or {_keys('↑', '↓')} dimension",
        f"{_keys('A', 'B')} {_keys('T')} tie {_keys('X')} both bad "
        f"({_keys('A')}/{_keys('B')} again: strength 1→2→3)",
        f"{_keys(',')} then {_keys('1')}–{_keys('5')} scores A",
        f"{_keys('.')} then {_keys('1')}–{_keys('5')} scores B",
        f"{_keys('Enter')} submit", f"{_keys('S', 'S')} skip", f"{_keys('?')} rubric"]),
    "Marks: " + " · ".join([
        f"{_keys('I')} / {_keys('O')} mark in / out at the current frame",
        f"{_keys('Shift')}+{_keys('A')}/{_keys('B')} clip",
        f"{_keys('K')} kind", f"{_keys('N')} art/failure", f"{_keys('M')} add the mark"]) + ". Frames count from 1.",
])
