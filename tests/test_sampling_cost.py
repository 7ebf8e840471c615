"""The sampling cost counts network evaluations as examples seen, whatever the batching, and only while measuring."""

from __future__ import annotations

import torch
from torch import nn

from video_diffusion_lab.metrics.sampling_cost import SamplingCost


def test_evaluations_are_counted_per_example_while_measuring_only() -> None:
    network = nn.Linear(2, 2)
    cost = SamplingCost([network])
    network(torch.zeros(5, 2))  # not measured: a training step, say
    with cost.measure(num_clips=3):
        network(torch.zeros(3, 2))
        network(torch.zeros(6, 2))  # a guided step on a doubled batch costs two evaluations per clip
    result = cost.compute(lambda t: t, torch.device("cpu"))
    assert result["network_evaluations_per_clip"] == 3.0
    assert result["seconds_per_clip"] >= 0
    cost.remove()
    with cost.measure(num_clips=1):
        network(torch.zeros(4, 2))
    assert cost.evaluations == 9, "hooks removed: nothing more is counted"
