"""The reward model's losses and statistics against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from engine.reward.evaluate import auc, spearman
from engine.reward.losses import (A_WINS, B_WINS, TIE, deformation_loss, outcome_log_probs, pairwise_tie_loss,
                                  score_regression_loss, tie_param_to_raw)


def _raw(value: float, model: str) -> torch.Tensor:
    return torch.tensor(tie_param_to_raw(value, model))


def test_rao_kupper_probabilities_match_hand_computed_values() -> None:
    # theta = 2, r_a = log 2, r_b = 0:  pi_a = 2, pi_b = 1
    #   P(a) = 2 / (2 + 2*1) = 1/2;  P(b) = 1 / (1 + 2*2) = 1/5;  P(tie) = (4-1)*2*1 / (4*5) = 3/10
    p = outcome_log_probs(torch.tensor(math.log(2.0)), torch.tensor(0.0), _raw(2.0, "rao_kupper"), "rao_kupper").exp()
    assert p.tolist() == pytest.approx([0.5, 0.3, 0.2], abs=1e-6)
    # Equal rewards: every outcome 1/3 with theta = 2 (the tie share is (theta-1)/(theta+1)).
    p = outcome_log_probs(torch.tensor(0.7), torch.tensor(0.7), _raw(2.0, "rao_kupper"), "rao_kupper").exp()
    assert p.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3], abs=1e-6)
    # The loss is the mean negative log-likelihood of the observed outcomes.
    loss = pairwise_tie_loss(torch.tensor([math.log(2.0)] * 3), torch.zeros(3), torch.tensor([A_WINS, TIE, B_WINS]),
                             _raw(2.0, "rao_kupper").expand(3), "rao_kupper")
    assert float(loss) == pytest.approx(-(math.log(0.5) + math.log(0.3) + math.log(0.2)) / 3, abs=1e-6)


def test_davidson_probabilities_match_hand_computed_values() -> None:
    # nu = 1, pi_a = 4, pi_b = 1: Z = 4 + 1 + sqrt(4) = 7 -> 4/7, 2/7, 1/7
    p = outcome_log_probs(torch.tensor(math.log(4.0)), torch.tensor(0.0), _raw(1.0, "davidson"), "davidson").exp()
    assert p.tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7], abs=1e-6)
    loss = pairwise_tie_loss(torch.tensor([math.log(4.0)]), torch.zeros(1), torch.tensor([TIE]),
                             _raw(1.0, "davidson").expand(1), "davidson")
    assert float(loss) == pytest.approx(-math.log(2 / 7), abs=1e-6)


@pytest.mark.parametrize("model", ["rao_kupper", "davidson"])
def test_probabilities_sum_to_one_and_stay_finite(model: str) -> None:
    d = torch.linspace(-60, 60, 121)
    logp = outcome_log_probs(d, torch.zeros_like(d), _raw(3.0, model).expand_as(d), model)
    assert torch.isfinite(logp).all()
    assert torch.allclose(logp.exp().sum(-1), torch.ones_like(d), atol=1e-5)


@pytest.mark.parametrize("model", ["rao_kupper", "davidson"])
def test_ties_change_the_gradient(model: str) -> None:
    raw = _raw(2.0, model)

    def grads(outcomes: list[int]) -> tuple[float, float]:
        r_a = torch.tensor([1.5] * len(outcomes), requires_grad=True)
        r_b = torch.tensor([0.0] * len(outcomes), requires_grad=True)
        pairwise_tie_loss(r_a, r_b, torch.tensor(outcomes), raw.expand(len(outcomes)), model).backward()
        return float(r_a.grad.sum()), float(r_b.grad.sum())  # type: ignore[union-attr]

    win_only = grads([A_WINS])
    with_tie = grads([A_WINS, TIE])
    tie_only = grads([TIE])
    assert with_tie != pytest.approx(win_only)
    # A tie between clips the model holds apart pulls them together: a's reward down, b's up.
    assert tie_only[0] > 0 and tie_only[1] < 0
    # A tie on clips already scored equal exerts no pull.
    r = torch.zeros(1, requires_grad=True)
    pairwise_tie_loss(r, torch.zeros(1), torch.tensor([TIE]), raw.expand(1), model).backward()
    assert float(r.grad) == pytest.approx(0.0, abs=1e-7)  # type: ignore[arg-type]


def test_regression_and_deformation_losses() -> None:
    pred = torch.tensor([[3.0, 4.0], [1.0, 5.0]])
    target = torch.tensor([[4.0, 0.0], [1.0, 3.0]])
    mask = torch.tensor([[True, False], [True, True]])
    assert float(score_regression_loss(pred, target, mask)) == pytest.approx((1 + 0 + 4) / 3)
    assert float(score_regression_loss(pred, target, torch.zeros_like(mask))) == 0.0
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, -100]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert float(deformation_loss(logits, labels)) == pytest.approx(expected, abs=1e-6)


def test_spearman_and_auc() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # x ranks 1..5, y ranks (2, 1, 4, 3, 5): d^2 sums to 4 -> 1 - 6*4 / (5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5, 0.9], [0.5, 0.1]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert auc([], [0.3]) is None
