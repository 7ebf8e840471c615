"""FDM's U-Net: relative positions only (shift invariance, equivariance to reordering frames with their indices),
the released temporal norm lets padding reach real frames while the fixed form does not, the observed indicator
matters, and the paper's CARLA size."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.networks.fdm_unet import FDMUNet, FDMUNetConfig, masked_group_norm, relative_distance_features

TINY = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8, 4), num_heads=2)


def tiny_net(**overrides) -> FDMUNet:
    torch.manual_seed(0)
    model = FDMUNet(FDMUNetConfig(**{**TINY, **overrides}), image_size=8, channels=3, max_frames=6)
    with torch.no_grad():  # zero-initialised output layers would make every check trivial
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def net() -> FDMUNet:
    return tiny_net()


@pytest.fixture(scope="module")
def fixed_net() -> FDMUNet:
    return tiny_net(temporal_norm="exclude_padding")


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 3, 8, 8, generator=g)
    t = torch.tensor([100.0, 700.0])
    frame_indices = torch.tensor([[0, 3, 7, 500], [5, 6, 100, 2]])
    observed = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]]).bool()
    return z, t, FrameMask(observed, ~observed, frame_indices)


def padded(z, mask, seed):
    """The same pass with two padding slots appended (random content and indices)."""
    g = torch.Generator().manual_seed(10 + seed)
    padded_z = torch.cat([z, 5 * torch.randn(2, 2, 3, 8, 8, generator=g)], dim=1)
    none = torch.zeros(2, 2, dtype=torch.bool)
    indices = torch.cat([mask.frame_indices, torch.randint(0, 999, (2, 2), generator=g)], dim=1)
    return padded_z, FrameMask(torch.cat([mask.observed, none], 1), torch.cat([mask.latent, none], 1), indices)


@pytest.mark.parametrize("which", ["net", "fixed_net"])
def test_shift_of_all_indices_changes_nothing(which, inputs, request):
    model = request.getfixturevalue(which)
    z, t, mask = inputs
    with torch.no_grad():
        out = model(z, t, mask)
        shifted = model(z, t, FrameMask(mask.observed, mask.latent, mask.frame_indices + 123))
        spread = model(z, t, FrameMask(mask.observed, mask.latent, mask.frame_indices * 3))
    torch.testing.assert_close(shifted, out, rtol=1e-4, atol=1e-4)
    assert (out - spread).abs().max() > 1e-3  # but the positions do matter


@pytest.mark.parametrize("which", ["net", "fixed_net"])
def test_reordering_frames_with_their_indices_reorders_the_output(which, inputs, request):
    model = request.getfixturevalue(which)
    z, t, mask = inputs
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = model(z, t, mask)
        permuted = model(
            z[:, perm], t, FrameMask(mask.observed[:, perm], mask.latent[:, perm], mask.frame_indices[:, perm])
        )
    torch.testing.assert_close(permuted, out[:, perm], rtol=1e-4, atol=1e-4)


def test_fixed_temporal_norm_padding_never_changes_real_frames(fixed_net, inputs):
    z, t, mask = inputs
    with torch.no_grad():
        out = fixed_net(z, t, mask)
        for seed in range(2):
            padded_z, padded_mask = padded(z, mask, seed)
            torch.testing.assert_close(fixed_net(padded_z, t, padded_mask)[:, :4], out, rtol=1e-4, atol=1e-4)


def test_released_temporal_norm_lets_padding_reach_real_frames(net, fixed_net, inputs):
    """The released quirk the option fixes: padding slots take part in the temporal GroupNorm statistics."""
    z, t, mask = inputs
    padded_z, padded_mask = padded(z, mask, 0)
    with torch.no_grad():
        assert (net(padded_z, t, padded_mask)[:, :4] - net(z, t, mask)).abs().max() > 1e-3
        # without padding the two forms are the same function
        same_weights = tiny_net(temporal_norm="exclude_padding")
        same_weights.load_state_dict(net.state_dict())
        torch.testing.assert_close(same_weights(z, t, mask), net(z, t, mask))


def test_masked_group_norm_equals_group_norm_of_the_valid_positions():
    norm = torch.nn.GroupNorm(2, 4)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(3, 4, 6)
    valid = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 1]]).bool()
    out = masked_group_norm(norm, x, valid)
    for n in range(3):
        keep = valid[n]
        torch.testing.assert_close(out[n][:, keep], norm(x[n : n + 1, :, keep])[0])
    torch.testing.assert_close(masked_group_norm(norm, x, torch.ones_like(valid)), norm(x))


def test_observed_indicator_and_time_enter_the_output(net, inputs):
    z, t, mask = inputs
    with torch.no_grad():
        out = net(z, t, mask)
        flipped = FrameMask(mask.latent, mask.observed, mask.frame_indices)
        assert (net(z, t, flipped) - out).abs().max() > 1e-3
        assert (net(z, t + 50, mask) - out).abs().max() > 1e-3


def test_relative_distance_features():
    f = relative_distance_features(torch.tensor([[0, 3]]))
    log4 = torch.log1p(torch.tensor(3.0))
    assert torch.allclose(f[0, 1, 0], torch.stack([log4, torch.tensor(0.0), torch.tensor(0.0)]))  # d = 3 - 0
    assert torch.allclose(f[0, 0, 1], torch.stack([torch.tensor(0.0), log4, torch.tensor(0.0)]))  # d = 0 - 3
    assert f[0, 0, 0].tolist() == [0.0, 0.0, 1.0]


def test_errors_name_the_field(net):
    with pytest.raises(ValueError, match="frames_per_pass"):
        net(torch.zeros(1, 7, 3, 8, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="image_size"):
        net(torch.zeros(1, 2, 3, 16, 16), torch.zeros(1))
    with pytest.raises(ValueError, match="temporal_norm"):
        FDMUNetConfig(temporal_norm="per_frame")
    with pytest.raises(ValueError, match="max_frames"):
        FDMUNet(FDMUNetConfig(**TINY), image_size=8, max_frames=0)


def test_paper_carla_network_has_the_released_parameter_count():
    """80,358,147: the released code's count at its CARLA flags (benchmarks/parameter_counts.py); README: 80.4M."""
    with torch.device("meta"):
        model = FDMUNet(FDMUNetConfig(), image_size=128, channels=3, max_frames=20)
    count = sum(p.numel() for p in model.parameters())
    print(f"FDM CARLA network: {count:,} parameters (released code: 80,358,147)")
    assert count == 80_358_147
