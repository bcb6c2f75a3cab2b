"""The one utility clips are ranked by: Best of N, on-policy loop pairing and Flow-RWR alike.

    u = Σ_d w_d r_d / Σ_d w_d − FAILURE_PENALTY · P(failure)

r_d is the reward model's score on production dimension d (w_d its ``weights``, default all 1),
P(failure) the largest per-segment probability of a *failure* (collapse). P(intentional) never
counts against a clip: an intentional deformation is art. This is the reward model's combined
reward, `RewardScore.reward` (`RewardModel.combined` computes it with `penalised`), so the number
a clip is ranked by is the number the studio shows and stores.

Torch-free: the config and the readers import it without loading a model.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    import torch

    from .types import RewardScore

__all__ = ["FAILURE_PENALTY", "penalised", "utility", "utility_of_dict"]

# A sure failure (P = 1) costs 2 on the log-strength scale of r_d: an otherwise equal clip without
# it is preferred about 88 % of the time (σ(2)), so a collapse outweighs any small quality edge.
FAILURE_PENALTY = 2.0


@overload
def penalised(quality: float, p_failure: float) -> float: ...
@overload
def penalised(quality: "torch.Tensor", p_failure: "torch.Tensor") -> "torch.Tensor": ...


def penalised(quality: Any, p_failure: Any) -> Any:
    """Quality (the weighted mean of r_d) minus the failure penalty; floats or tensors alike."""
    return quality - FAILURE_PENALTY * p_failure


def utility(score: "RewardScore") -> float:
    """A scored clip's utility (module docstring): its combined reward."""
    return float(score.reward)


def utility_of_dict(data: Mapping[str, Any]) -> float:
    """The utility of a score written as JSON (`RewardScore.to_dict`, `reward score --json`): its
    ``reward``, or, for a score object without one, the unweighted mean of its dimensions penalised."""
    if "reward" in data:
        return float(data["reward"])
    dims = [float(v) for v in data["dimensions"].values()]
    return float(penalised(sum(dims) / len(dims) if dims else 0.0, float(data.get("p_failure", 0.0))))
