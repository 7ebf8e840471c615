"""FDM's U-Net: relative positions only (shift invariance, equivariance to reordering frames with their indices),
padding slots never change real frames, the observed indicator matters, and the paper's CARLA size."""

from __future__ import annotations

import pytest
import torch

from diffusion.masks import FrameMask
from networks.fdm_unet import FDMUNet, relative_distance_features


@pytest.fixture(scope="module")
def net() -> FDMUNet:
    torch.manual_seed(0)
    model = FDMUNet(image_size=8, model_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                    attention_resolutions=(8, 4), num_heads=2, max_frames=6)
    with torch.no_grad():  # zero-initialised output layers would make every check trivial
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 3, 8, 8, generator=g)
    t = torch.tensor([100.0, 700.0])
    frame_indices = torch.tensor([[0, 3, 7, 500], [5, 6, 100, 2]])
    observed = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]]).bool()
    return z, t, FrameMask(observed, ~observed, frame_indices)


def test_shift_of_all_indices_changes_nothing(net, inputs):
    z, t, mask = inputs
    out = net(z, t, mask)
    shifted = net(z, t, FrameMask(mask.observed, mask.latent, mask.frame_indices + 123))
    assert torch.allclose(out, shifted, atol=1e-6)
    # but the positions do matter: spreading the frames apart changes the output
    spread = net(z, t, FrameMask(mask.observed, mask.latent, mask.frame_indices * 3))
    assert (out - spread).abs().max() > 1e-3


def test_reordering_frames_with_their_indices_reorders_the_output(net, inputs):
    z, t, mask = inputs
    out = net(z, t, mask)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = net(z[:, perm], t, FrameMask(mask.observed[:, perm], mask.latent[:, perm], mask.frame_indices[:, perm]))
    assert torch.allclose(permuted, out[:, perm], atol=1e-5)


def test_padding_slots_do_not_change_real_frames(net, inputs):
    z, t, mask = inputs
    out = net(z, t, mask)
    for seed in range(2):
        g = torch.Generator().manual_seed(10 + seed)
        padded_z = torch.cat([z, 5 * torch.randn(2, 2, 3, 8, 8, generator=g)], dim=1)
        none = torch.zeros(2, 2, dtype=torch.bool)
        indices = torch.cat([mask.frame_indices, torch.randint(0, 999, (2, 2), generator=g)], dim=1)
        padded = FrameMask(torch.cat([mask.observed, none], 1), torch.cat([mask.latent, none], 1), indices)
        assert torch.allclose(net(z=padded_z, time=t, mask=padded)[:, :4], out, atol=1e-5)


def test_observed_indicator_and_time_enter_the_output(net, inputs):
    z, t, mask = inputs
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


def test_more_frames_than_built_for_names_the_field(net):
    with pytest.raises(ValueError, match="frames_per_pass"):
        net(torch.zeros(1, 7, 3, 8, 8), torch.zeros(1))


def test_paper_carla_network_counts_about_80m_parameters():
    with torch.device("meta"):
        model = FDMUNet(image_size=128, model_channels=128, channel_mult=(1, 1, 2, 3, 4), num_res_blocks=1,
                        attention_resolutions=(16, 8), num_heads=4, max_frames=20)
    count = sum(p.numel() for p in model.parameters())
    print(f"FDM CARLA network: {count / 1e6:.2f}M parameters (official code: 80.4M)")
    assert 79.5e6 < count < 81.5e6
