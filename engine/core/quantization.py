"""The quantization modes: one registry every other module derives its lists and rules from.

A request names a mode (`GenerationRequest.quantization`); engine/core/memory.py applies it,
engine/core/quantized_cache.py stores its weights, `python -m engine quantize` writes that cache.
Each of them asks this table what a mode is, so a new mode is one `QuantizationMode(...)` line
here plus the code that applies it. Importing this module loads no library.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CACHEABLE_MODES", "LOWER_MEMORY_ORDER", "MODES", "QUANTIZATION_MODES", "QuantizationMode",
           "library_of", "mode_named", "modes_of"]

Library = Literal["none", "torchao", "quanto", "layerwise"]


@dataclass(frozen=True)
class QuantizationMode:
    """One weight quantization mode.

    `library`: what applies it: torchao while loading (diffusers' and transformers' own
    TorchAoConfig), optimum-quanto after loading, or diffusers' layerwise casting (float8
    storage, cast up layer by layer). `weights`: the stored weight type. `needs_fp8_gpu`: runs
    only on a CUDA GPU with fp8 support (Ada/Hopper or newer). `streamable`: group and sequential
    offload can stream its weights (quanto's packed tensors cannot be). `memory_rank`: its place
    on the ladder an out-of-memory error walks down (higher: less memory), None when off it.
    """

    name: str
    library: Library
    weights: Literal["", "int8", "int4", "fp8"] = ""
    needs_fp8_gpu: bool = False
    streamable: bool = True
    memory_rank: int | None = None

    @property
    def cacheable(self) -> bool:
        """Whether the quantized cache can keep its weights (every mode that quantizes)."""
        return self.library != "none"


# In the order the form's dropdown and the CLI's --quantization list them.
MODES: tuple[QuantizationMode, ...] = (
    QuantizationMode("none", "none", memory_rank=0),
    QuantizationMode("torchao-int8", "torchao", "int8", memory_rank=2),
    QuantizationMode("torchao-fp8", "torchao", "fp8", needs_fp8_gpu=True),
    QuantizationMode("quanto-int8", "quanto", "int8", streamable=False, memory_rank=3),
    QuantizationMode("quanto-int4", "quanto", "int4", streamable=False, memory_rank=4),
    QuantizationMode("quanto-fp8", "quanto", "fp8", streamable=False),
    QuantizationMode("fp8-layerwise", "layerwise", "fp8", memory_rank=1),
)
_BY_NAME = {m.name: m for m in MODES}

QUANTIZATION_MODES: tuple[str, ...] = tuple(m.name for m in MODES)


def modes_of(library: Library) -> tuple[str, ...]:
    """The names of the modes `library` applies, in registry order."""
    return tuple(m.name for m in MODES if m.library == library)


# `python -m engine quantize --quantization` choices, grouped by library as that command has always listed them.
CACHEABLE_MODES: tuple[str, ...] = tuple(name for lib in ("quanto", "torchao", "layerwise") for name in modes_of(lib)
                                         if _BY_NAME[name].cacheable)
# Most memory first: what engine/core/memory.py's lower_profile suggests next after an out-of-memory error.
LOWER_MEMORY_ORDER: tuple[str, ...] = tuple(m.name for m in sorted((m for m in MODES if m.memory_rank is not None),
                                                                   key=lambda m: m.memory_rank or 0))


def mode_named(name: str) -> QuantizationMode | None:
    """The mode called `name`, or None (a request refuses unknown names before they get here)."""
    return _BY_NAME.get(name)


def library_of(name: str) -> str:
    """The library that applies mode `name` ("none" for no quantization or an unknown name)."""
    mode = _BY_NAME.get(name)
    return mode.library if mode is not None else "none"
