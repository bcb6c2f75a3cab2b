"""Losses of the reward model: Bradley-Terry with ties, score regression, deformation classes.

Pairwise verdicts with ties (per dimension d, rewards r_a, r_b of the two clips):

* **Rao-Kupper** (the tie-aware Bradley-Terry form VideoAlign trains with), theta > 1::

      P(a > b) = e^{r_a} / (e^{r_a} + theta e^{r_b}) = sigma(r_a - r_b - log theta)
      P(b > a) = e^{r_b} / (e^{r_b} + theta e^{r_a}) = sigma(r_b - r_a - log theta)
      P(tie)   = (theta^2 - 1) e^{r_a} e^{r_b} / ((e^{r_a} + theta e^{r_b})(e^{r_b} + theta e^{r_a}))
               = (theta^2 - 1) P(a > b) P(b > a)

  The three sum to 1. At r_a = r_b the tie probability is (theta - 1) / (theta + 1).

* **Davidson**, nu > 0::

      P(a > b) = e^{r_a} / Z,   P(b > a) = e^{r_b} / Z,   P(tie) = nu e^{(r_a + r_b)/2} / Z,
      Z = e^{r_a} + e^{r_b} + nu e^{(r_a + r_b)/2}

The loss is the negative log-likelihood of the observed outcome, averaged over verdicts. A tie
is a real observation: its gradient pulls the two rewards together (it is zero only when they
are already equal), which plain Bradley-Terry, where ties are dropped, never does.

The tie parameter is stored unconstrained: theta = 1 + e^u (Rao-Kupper), nu = e^u (Davidson).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["A_WINS", "TIE", "B_WINS", "tie_param_to_raw", "raw_to_tie_param", "outcome_log_probs",
           "pairwise_tie_loss", "score_regression_loss", "deformation_loss"]

A_WINS, TIE, B_WINS = 0, 1, 2


def tie_param_to_raw(value: float, model: str) -> float:
    """The unconstrained u for a tie parameter (theta for Rao-Kupper, nu for Davidson)."""
    return math.log(value - 1.0) if model == "rao_kupper" else math.log(value)


def raw_to_tie_param(raw: torch.Tensor, model: str) -> torch.Tensor:
    return 1.0 + torch.exp(raw) if model == "rao_kupper" else torch.exp(raw)


def outcome_log_probs(r_a: torch.Tensor, r_b: torch.Tensor, raw_tie: torch.Tensor, model: str) -> torch.Tensor:
    """log P(a wins), log P(tie), log P(b wins) as ``[..., 3]`` (float32, numerically stable)."""
    r_a, r_b, raw_tie = r_a.float(), r_b.float(), raw_tie.float()
    d = r_a - r_b
    if model == "rao_kupper":
        # log theta = log(1 + e^u) = softplus(u); log(theta^2 - 1) = log(theta - 1) + log(theta + 1)
        log_theta = F.softplus(raw_tie)
        log_a = -F.softplus(log_theta - d)
        log_b = -F.softplus(log_theta + d)
        log_tie = raw_tie + torch.log(2.0 + torch.exp(raw_tie)) + log_a + log_b
        return torch.stack(torch.broadcast_tensors(log_a, log_tie, log_b), dim=-1)
    if model == "davidson":
        tie_logit = raw_tie + 0.5 * (r_a + r_b)
        logits = torch.stack(torch.broadcast_tensors(r_a, tie_logit, r_b), dim=-1)
        return torch.log_softmax(logits, dim=-1)
    raise ValueError(f"unknown tie model {model!r}")


def pairwise_tie_loss(r_a: torch.Tensor, r_b: torch.Tensor, outcome: torch.Tensor, raw_tie: torch.Tensor,
                      model: str = "rao_kupper", weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of the outcomes (0: a wins, 1: tie, 2: b wins)."""
    logp = outcome_log_probs(r_a, r_b, raw_tie, model)
    nll = -logp.gather(-1, outcome.long().unsqueeze(-1)).squeeze(-1)
    if weight is not None:
        return (nll * weight).sum() / weight.sum().clamp_min(1e-12)
    return nll.mean()


def score_regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE of predicted against mean absolute 1-5 scores, over the entries `mask` marks."""
    mask = mask.float()
    if not bool(mask.any()):
        return pred.sum() * 0.0
    return (((pred.float() - target.float()) ** 2) * mask).sum() / mask.sum()


def deformation_loss(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Cross-entropy of per-segment none / intentional / failure logits; label -100 is ignored."""
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).long()
    if not bool((flat_labels >= 0).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(flat_logits, flat_labels, weight=class_weights, ignore_index=-100)
