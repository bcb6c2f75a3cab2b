"""The HydraLoRA update of one linear layer (PTTA §3.3, after Tian et al., NeurIPS 2024).

For a frozen ``W`` (``out × in``) the layer adds a shared down-projection ``A`` (``r × in``) and
``N`` up-projections ``B_i`` (``out × r``), mixed per token by a router::

    y = W x + s · (alpha / r) · Σ_i g_i(x) · B_i A dropout(x),    g(x) = softmax(R x)  (float32)

``R`` is a bias-free ``Linear(in, N)``; ``s`` is the inference strength (1 while training).
Instead of the router, fixed weights ``ω`` may be given (``g_i = ω_i`` for every token). With
``N = 1`` and no router the layer is plain LoRA, which is how the trainer's ``lora`` kind is
built, so both kinds share one code path (and one benchmark baseline).

Initialisation follows the reference code: ``A`` kaiming-uniform (``a = √5``, as ``nn.Linear``),
every ``B_i`` zero, so the update is exactly zero at the start; the router keeps ``nn.Linear``'s
default init. Trainable parameters per layer: ``r·in + N·r·out + N·in`` (no router term with fixed
weights or ``N = 1``), see `hydralora_parameter_count`.

Why there is no "merge": ``g(x)`` changes from token to token, so ``Σ g_i B_i A`` is not one
matrix that could be folded into ``W``. Plain LoRA (``N = 1``) can be merged.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ROUTERS: tuple[str, ...] = ("learned", "fixed")


def hydralora_parameter_count(in_features: int, out_features: int, rank: int, num_heads: int,
                              router: str = "learned") -> int:
    """Trainable parameters one layer adds: ``r·in + N·r·out (+ N·in for a learned router, N > 1)``."""
    routed = router == "learned" and num_heads > 1
    return rank * in_features + num_heads * rank * out_features + (num_heads * in_features if routed else 0)


class HydraLoRA(nn.Module):
    """The trainable update ``ΔW x`` of one ``nn.Linear``; `forward` returns only the update.

    Parameters are ``lora_A`` (``r × in``), ``lora_B`` (``N × out × r``) and, with a learned router
    and ``N > 1``, ``router`` (``N × in``, no bias). ``strength`` scales the whole update at
    inference and is not a parameter.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        alpha: float,
        num_heads: int = 4,
        *,
        router: str = "learned",
        fixed_weights: Sequence[float] | None = None,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if rank < 1 or num_heads < 1:
            raise ValueError(f"rank and num_heads must be at least 1, got rank={rank}, num_heads={num_heads}")
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
        self.in_features, self.out_features = in_features, out_features
        self.rank, self.alpha, self.num_heads = rank, float(alpha), num_heads
        self.scaling = self.alpha / rank
        self.strength = 1.0
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(num_heads, out_features, rank, device=device, dtype=dtype))
        self.router: nn.Linear | None = None
        self.router_kind = router
        if router == "learned" and num_heads > 1:
            self.router = nn.Linear(in_features, num_heads, bias=False, device=device, dtype=dtype)
        if router == "fixed" or num_heads == 1:
            weights = [1.0 / num_heads] * num_heads if fixed_weights is None else [float(w) for w in fixed_weights]
            if len(weights) != num_heads:
                raise ValueError(f"fixed_weights needs {num_heads} values (one per head), got {len(weights)}")
            self.register_buffer("head_weights", torch.tensor(weights, dtype=torch.float32, device=device))
        else:
            if fixed_weights is not None:
                raise ValueError("fixed_weights replace the router: use router='fixed' with them")
            self.head_weights = None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha:g}, "
                f"heads={self.num_heads}, router={'learned' if self.router is not None else 'fixed'}")

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token head weights ``[..., N]`` in float32; each row sums to 1 with a learned router."""
        if self.router is None:
            assert self.head_weights is not None
            return self.head_weights.to(x.device).expand(*x.shape[:-1], self.num_heads)
        # float32 logits and softmax, also under autocast (which would run the linear in bf16):
        # in bf16 the router's small logit differences are rounded away.
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(x.float(), self.router.weight.float())
            return torch.softmax(logits, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        param_dtype = self.lora_A.dtype
        h = self.dropout(x).to(param_dtype)
        down = F.linear(h, self.lora_A)  # [..., r]
        if self.num_heads == 1:
            gate = self.head_weights.to(device=x.device, dtype=param_dtype) if self.head_weights is not None else 1.0
            up = F.linear(down, self.lora_B[0]) * gate
        else:
            # Σ_i g_i B_i (A x) = [B_1 … B_N] · [g_1 A x; …; g_N A x]: one matmul of width N·r, and
            # only [..., N·r] is kept for backward instead of N full [..., out] head outputs.
            gates = self.route(x).to(param_dtype)  # [..., N]
            mixed = (gates.unsqueeze(-1) * down.unsqueeze(-2)).flatten(-2)  # [..., N*r]
            stacked = self.lora_B.permute(1, 0, 2).reshape(self.out_features, self.num_heads * self.rank)
            up = F.linear(mixed, stacked)
        return up * (self.scaling * self.strength)

    def delta_weight(self, head_weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """``(alpha/r) Σ ω_i B_i A`` for given ω: the matrix a fixed mixture would add to ``W``."""
        w = torch.as_tensor(head_weights, dtype=self.lora_B.dtype, device=self.lora_B.device)
        return torch.einsum("n,nor,ri->oi", w, self.lora_B, self.lora_A) * self.scaling


class HydraLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus its HydraLoRA update: ``base(x) + adapter(x)``.

    The injector does not swap modules (it hooks the existing ``nn.Linear`` so that the module
    tree, and peft's LoRA layers on the same model, stay as they are); this wrapper is the same
    computation as one stand-alone layer, for tests and for code that builds its own models.
    """

    def __init__(self, base: nn.Linear, adapter: HydraLoRA) -> None:
        super().__init__()
        if (adapter.in_features, adapter.out_features) != (base.in_features, base.out_features):
            raise ValueError(f"adapter is {adapter.in_features}->{adapter.out_features}, "
                             f"base is {base.in_features}->{base.out_features}")
        self.base = base
        self.adapter = adapter
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        return out + self.adapter(x).to(out.dtype)
