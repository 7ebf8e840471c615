"""Per-example noise streams: a clip's samples do not depend on how clips are batched, chunked or spread over processes.

A ``NoiseSource`` holds one generator per (clip, sample) row, seeded from (evaluation seed, data set index, sample
number). Sampling rows [0:4] in one call and rows [0:2], [2:4] in two calls must give the same samples bit for bit,
for every sampler and through the guided denoisers, which draw noise of their own.

The network here runs its convolution one example at a time: CPU (and cuDNN) convolution kernels are chosen by batch
size and differ in the last bit (measured: 3.6e-7 between batches of 3 + 1 and 4), which is the network's business,
not the noise's. ``test_batched_network_agrees_to_rounding`` shows what a batched network gives.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from video_diffusion_lab.diffusion import (
    CosineLogSNRSchedule,
    Denoiser,
    DiscreteSchedule,
    FrameMask,
    NoiseSource,
    randn_like,
    sample,
)
from video_diffusion_lab.diffusion.guidance import (
    ClassifierFreeGuidanceDenoiser,
    ReconstructionGuidedDenoiser,
    ReplacementDenoiser,
)
from video_diffusion_lab.diffusion.masks import default_frame_indices
from video_diffusion_lab.diffusion.noise import row_seed, row_seeds

SHAPE = (4, 5, 2, 4, 4)  # B, T, C, H, W
SAMPLER_OPTIONS = [
    ("ddim", {"eta": 0.0}),
    ("ddim", {"eta": 1.0}),
    ("ddpm", {"gamma": 1.0}),
    ("predictor_corrector", {}),
    ("heun", {}),
    ("heun", {"s_churn": 2.0}),
    ("dpmpp_2m", {}),
    ("dpmpp_2m_sde", {}),
    ("dpmpp_3m", {}),
    ("dpmpp_3m_sde", {}),
]


pytestmark = pytest.mark.usefixtures("single_thread")


class TinyNet(nn.Module):
    """A random network mixing frames and pixels (3D convolution), conditioned on time and an optional label."""

    def __init__(self, per_example: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(2, 2, 3, padding=1)
        self.time = nn.Linear(1, 2)
        self.label = nn.Embedding(4, 2)
        self.per_example = per_example

    def forward(self, z, time, mask, label=None, drop_cond=None):
        frames_first = z.transpose(1, 2)
        if self.per_example:
            h = torch.cat([self.conv(example[None]) for example in frames_first]).transpose(1, 2)
        else:
            h = self.conv(frames_first).transpose(1, 2)
        bias = self.time(torch.tanh(time.float()[:, None] / 1000))
        if label is not None:
            keep = torch.ones_like(label, dtype=torch.bool) if drop_cond is None else ~drop_cond
            bias = bias + self.label(label) * keep[:, None]
        return h + bias[:, None, :, None, None]


def clips() -> torch.Tensor:
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1


def mask_with_padding() -> FrameMask:
    observed = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    latent = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    return FrameMask(observed, latent, default_frame_indices(4, 5))


def source() -> NoiseSource:
    """A fresh source for 2 clips (data set indices 17 and 3) with 2 samples each: 4 rows."""
    return NoiseSource.for_clips(seed=7, indices=torch.tensor([17, 3]), num_samples=2)


def in_chunks(run, bounds):
    """``run(rows, source_rows)`` on each chunk of rows, all chunks drawing from one fresh source, concatenated."""
    full = source()
    return torch.cat([run(slice(i, j), full[i:j]) for i, j in bounds])


CHUNKINGS = [[(0, 4)], [(0, 2), (2, 4)], [(0, 3), (3, 4)], [(0, 1), (1, 2), (2, 3), (3, 4)]]


# ------------------------------------------------------------------------------------------------------ seeds
def test_row_seeds_follow_repeat_interleave_and_are_distinct():
    seeds = row_seeds(7, torch.tensor([17, 3]), num_samples=2)
    assert seeds == [row_seed(7, 17, 0), row_seed(7, 17, 1), row_seed(7, 3, 0), row_seed(7, 3, 1)]
    assert len(set(seeds)) == 4
    assert row_seeds(7, [17, 3], 2) == seeds  # a list works as well as a tensor
    assert row_seeds(8, [17, 3], 2) != seeds  # the evaluation seed matters
    assert all(0 <= s < 2**63 for s in seeds)
    # Neighbouring indices and samples give unrelated seeds, not neighbouring ones.
    assert len({row_seed(0, i, n) for i in range(100) for n in range(10)}) == 1000
    with pytest.raises(ValueError, match="num_samples"):
        row_seeds(7, [1], 0)


def test_each_row_is_drawn_from_its_own_generator():
    x = torch.empty(4, 3, 2)
    drawn = source().randn_like(x)
    seeds = row_seeds(7, [17, 3], 2)
    for b in range(4):
        assert torch.equal(drawn[b], torch.randn(3, 2, generator=torch.Generator().manual_seed(seeds[b])))


def test_slices_share_the_streams_so_chunked_draws_equal_the_whole():
    whole = source()
    a, b = whole.randn_like(torch.empty(4, 6)), whole.randn_like(torch.empty(4, 6))
    parts = source()
    first, second = parts[0:2], parts[2:4]
    a_parts = torch.cat([first.randn_like(torch.empty(2, 6)), second.randn_like(torch.empty(2, 6))])
    b_parts = torch.cat([second.randn_like(torch.empty(2, 6)), first.randn_like(torch.empty(2, 6))])  # any order
    assert torch.equal(a, a_parts)
    assert torch.equal(b, torch.cat([b_parts[2:], b_parts[:2]]))
    assert len(parts[[3, 1]]) == 2 and len(parts[torch.tensor([0])]) == 1 and len(parts[2]) == 1


def test_a_source_refuses_shared_streams_and_wrong_batches():
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="row"):
        NoiseSource([generator, generator])
    with pytest.raises(ValueError, match="row"):
        source()[[0, 0]]
    with pytest.raises(ValueError, match="generator"):
        source().randn_like(torch.empty(3, 2))
    with pytest.raises(ValueError, match="generator"):
        NoiseSource([])


def test_randn_like_takes_none_a_generator_or_a_source():
    x = torch.empty(4, 3, dtype=torch.float64)
    torch.manual_seed(5)
    expected = torch.randn(4, 3, dtype=torch.float64)
    torch.manual_seed(5)
    assert torch.equal(randn_like(x), expected)
    assert torch.equal(
        randn_like(x, torch.Generator().manual_seed(5)),
        torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
    )
    drawn = randn_like(x, source())
    assert drawn.dtype == torch.float64 and torch.equal(drawn, source().randn_like(x))


# ------------------------------------------------------------------------------------------------ batch independence
@pytest.mark.parametrize("schedule", [DiscreteSchedule.linear(100), CosineLogSNRSchedule()], ids=["discrete", "logsnr"])
@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_samples_do_not_depend_on_the_batching(sampler, options, schedule):
    denoiser = Denoiser(TinyNet(), schedule, "eps")
    given, mask = clips(), mask_with_padding()

    def run(rows, noise):
        return sample(
            denoiser, given[rows], mask[rows], sampler=sampler, steps=5, grid="karras", generator=noise, **options
        )

    reference = in_chunks(run, CHUNKINGS[0])
    for bounds in CHUNKINGS[1:]:
        assert torch.equal(in_chunks(run, bounds), reference), bounds
    # And the streams matter: another evaluation seed gives other samples (for samplers that draw beyond the start).
    other = sample(
        denoiser,
        given,
        mask,
        sampler=sampler,
        steps=5,
        grid="karras",
        generator=NoiseSource.for_clips(8, torch.tensor([17, 3]), 2),
        **options,
    )
    assert not torch.equal(other, reference)


def guided(kind: str, denoiser: Denoiser, noise: NoiseSource):
    if kind == "replacement":
        return ReplacementDenoiser(denoiser, noise)
    if kind == "reconstruction":
        return ReconstructionGuidedDenoiser(denoiser, 5.0, noise)
    return ReplacementDenoiser(ClassifierFreeGuidanceDenoiser(denoiser, 2.0), noise)


@pytest.mark.parametrize("kind", ["replacement", "reconstruction", "classifier_free"])
@pytest.mark.parametrize("sampler,options", [("ddpm", {"gamma": 1.0}), ("heun", {}), ("dpmpp_2m_sde", {})])
def test_guided_samples_do_not_depend_on_the_batching(kind, sampler, options):
    """The wrappers draw their own noise (the noised copy of the given frames) from the rows' streams too."""
    denoiser = Denoiser(TinyNet(), CosineLogSNRSchedule(), "v")
    given, mask = clips(), mask_with_padding()
    label = torch.tensor([0, 1, 2, 3])

    def run(rows, noise):
        return sample(
            guided(kind, denoiser, noise),
            given[rows],
            mask[rows],
            sampler=sampler,
            steps=4,
            generator=noise,
            extra_args={"label": label[rows]},
            **options,
        )

    reference = in_chunks(run, CHUNKINGS[0])
    for bounds in CHUNKINGS[1:]:
        assert torch.equal(in_chunks(run, bounds), reference), bounds
    observed = FrameMask.per_frame(mask.observed, given).expand_as(given)
    assert torch.equal(reference[observed], given[observed])


def test_one_frame_rollout_with_context_does_not_depend_on_the_batching():
    """RVD's residual sampling: one-frame clips, a per-row context in ``extra_args``, frame after frame."""

    def network(z, time, mask, context):
        return 0.5 * z + context[0] * torch.tanh(time.float() / 1000)[:, None, None, None, None]

    denoiser = Denoiser(network, DiscreteSchedule.linear(50), "eps")
    one_frame = FrameMask.from_observed(torch.zeros(4, 1, dtype=torch.bool))
    context = torch.randn(4, 1, 2, 4, 4, generator=torch.Generator().manual_seed(1))

    def run(rows, noise):
        frames = [
            sample(
                denoiser,
                torch.zeros(len(range(4)[rows]), 1, 2, 4, 4),
                one_frame[rows],
                sampler="ddpm",
                steps=6,
                generator=noise,
                extra_args={"context": [context[rows] * k]},
            )
            for k in (1, 2, 3)
        ]
        return torch.cat(frames, dim=1)

    reference = in_chunks(run, CHUNKINGS[0])
    for bounds in CHUNKINGS[1:]:
        assert torch.equal(in_chunks(run, bounds), reference), bounds


def test_batched_network_agrees_to_rounding():
    """With a batched convolution the samples of a clip agree across batchings to float rounding, not bit for bit."""
    denoiser = Denoiser(TinyNet(per_example=False), DiscreteSchedule.linear(100), "eps")
    given, mask = clips(), mask_with_padding()

    def run(rows, noise):
        return sample(denoiser, given[rows], mask[rows], sampler="ddpm", steps=20, generator=noise)

    reference = in_chunks(run, CHUNKINGS[0])
    for bounds in CHUNKINGS[1:]:
        torch.testing.assert_close(in_chunks(run, bounds), reference, rtol=0, atol=1e-4)
