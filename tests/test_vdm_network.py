"""VDM's factorized U-Net: only temporal attention mixes frames, joint-training masks hold in every temporal layer,
relative time positions, conditioning and the errors that name their field."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion import FrameMask, default_frame_indices
from video_diffusion_lab.lightning_modules.vdm import joint_image_video_batch
from video_diffusion_lab.networks.vdm_unet import VDMUNet, VDMUNetConfig, temporal_attention_allowed

T_CLIP, N_IMAGES = 4, 2


def tiny_net(**kwargs) -> VDMUNet:
    torch.manual_seed(0)
    args = dict(
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8, 4),
        attention_head_dim=8,
        dropout=0.0,
    )
    net = VDMUNet(VDMUNetConfig(**{**args, **kwargs}), image_size=8, channels=3).eval()
    with torch.no_grad():  # zero-initialised output layers would hide any mixing: give every weight a value
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return net


def run_with_hooks(net: VDMUNet, z: torch.Tensor, **cond) -> tuple[torch.Tensor, list[torch.Tensor]]:
    outputs: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
        for layer in net.temporal_attention_layers
    ]
    try:
        with torch.no_grad():
            out = net(z, torch.tensor([1.5, -3.0]), None, **cond)
    finally:
        for hook in hooks:
            hook.remove()
    return out, outputs


def changed_frames(a: torch.Tensor, b: torch.Tensor, frames: int | None = None) -> set[int]:
    """Frame slots that differ between two (B, T, ...) tensors, or two per-frame (B*T, C, H, W) feature maps."""
    if frames is not None:
        a, b = a.unflatten(0, (-1, frames)), b.unflatten(0, (-1, frames))
    diff = (a - b).abs().transpose(0, 1).flatten(1).amax(dim=1)
    return {i for i, d in enumerate(diff.tolist()) if d > 1e-6}


def test_segment_mask_allows_own_segment_and_isolates_padding() -> None:
    segments = torch.tensor([[0, 0, 0, 1, 2]])
    allowed = temporal_attention_allowed(segments, torch.tensor([[False, False, True, False, False]]))
    assert allowed[0, 0].tolist() == [True, True, False, False, False]
    assert allowed[0, 2].tolist() == [False, False, True, False, False]  # padding: itself only
    assert allowed[0, 3].tolist() == [False, False, False, True, False]


def test_changing_one_extra_image_changes_no_other_frame_in_any_temporal_layer() -> None:
    net = tiny_net()
    assert len(net.temporal_attention_layers) == 7  # down 8, down 4, middle, 2 x up 4, 2 x up 8
    video = torch.randn(2, T_CLIP, 3, 8, 8)
    frame_indices = default_frame_indices(2, T_CLIP)
    z, _, segments = joint_image_video_batch(video, frame_indices, N_IMAGES, torch.Generator().manual_seed(0))
    assert segments[0].tolist() == [0, 0, 0, 0, 1, 2]
    out_a, layers_a = run_with_hooks(net, z, segment_ids=segments)
    z_b = z.clone()
    z_b[:, T_CLIP] = torch.randn_like(z_b[:, T_CLIP])  # the first extra image of every example
    out_b, layers_b = run_with_hooks(net, z_b, segment_ids=segments)
    assert len(layers_a) == len(net.temporal_attention_layers)
    for a, b in zip(layers_a, layers_b):  # per-frame feature maps (B*T, C, H, W)
        assert changed_frames(a, b, T_CLIP + N_IMAGES) == {T_CLIP}
    assert changed_frames(out_a, out_b) == {T_CLIP}

    # The same change without the segment ids reaches every frame: the test above can fail.
    _, free_a = run_with_hooks(net, z)
    _, free_b = run_with_hooks(net, z_b)
    assert changed_frames(free_a[0], free_b[0], T_CLIP + N_IMAGES) == set(range(T_CLIP + N_IMAGES))


def test_clip_frames_mix_through_temporal_attention_only() -> None:
    net = tiny_net()
    z = torch.randn(2, T_CLIP, 3, 8, 8)
    z_b = z.clone()
    z_b[:, 1] += 1.0
    out_a, layers_a = run_with_hooks(net, z)
    out_b, layers_b = run_with_hooks(net, z_b)
    assert changed_frames(out_a, out_b) == set(range(T_CLIP))
    # Before the first temporal attention nothing but frame 1 has moved: the convolutions are 1x3x3, norms per frame.
    first_input: list[torch.Tensor] = []
    hook = net.temporal_attention_layers[0].register_forward_pre_hook(lambda m, args: first_input.append(args[0]))
    with torch.no_grad():
        net(z, torch.tensor([0.0, 0.0]))
        net(z_b, torch.tensor([0.0, 0.0]))
    hook.remove()
    assert changed_frames(first_input[0], first_input[1], T_CLIP) == {1}


def test_relative_positions_shift_invariant_but_spacing_aware() -> None:
    net = tiny_net()
    z = torch.randn(2, T_CLIP, 3, 8, 8)
    time = torch.tensor([0.5, 0.5])
    observed = torch.zeros(2, T_CLIP, dtype=torch.bool)
    base = default_frame_indices(2, T_CLIP)
    with torch.no_grad():
        out = net(z, time, FrameMask.from_observed(observed, base))
        shifted = net(z, time, FrameMask.from_observed(observed, base + 7))
        spread = net(z, time, FrameMask.from_observed(observed, base * 3))
    torch.testing.assert_close(out, shifted)
    assert not torch.allclose(out, spread)


def test_class_and_vector_conditions_change_the_output_and_drop_to_null() -> None:
    net = tiny_net(num_classes=5)
    z, time = torch.randn(2, T_CLIP, 3, 8, 8), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        a = net(z, time, label=torch.tensor([0, 1]))
        b = net(z, time, label=torch.tensor([3, 4]))
        dropped = net(z, time, label=torch.tensor([3, 4]), drop_cond=torch.tensor([True, True]))
        null = net(z, time)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(dropped, null)
    vec_net = tiny_net(cond_dim=6)
    with torch.no_grad():
        v1 = vec_net(z, time, cond_vector=torch.randn(2, 6))
        v0 = vec_net(z, time, cond_vector=torch.randn(2, 6), drop_cond=torch.tensor([True, True]))
        assert not torch.allclose(v1, v0)
        torch.testing.assert_close(v0, vec_net(z, time))


def test_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="image_size"):
        VDMUNet(VDMUNetConfig(channel_mult=(1, 2, 2), model_channels=8, attention_head_dim=8), image_size=10)
    net = tiny_net()
    with pytest.raises(ValueError, match="num_classes"):
        net(torch.randn(1, 2, 3, 8, 8), torch.zeros(1), label=torch.tensor([1]))
    with pytest.raises(ValueError, match="image_size"):
        net(torch.randn(1, 2, 3, 16, 16), torch.zeros(1))
    with pytest.raises(ValueError, match="attention_head_dim"):
        VDMUNet(
            VDMUNetConfig(model_channels=12, channel_mult=(1,), attention_resolutions=(8,), attention_head_dim=8),
            image_size=8,
        )
    with pytest.raises(ValueError, match="num_classes, cond_dim"):
        VDMUNetConfig(num_classes=3, cond_dim=4)
    with pytest.raises(ValueError, match="channels"):
        net(torch.randn(1, 2, 1, 8, 8), torch.zeros(1))


def test_embedding_width_is_a_config_field():
    config = VDMUNetConfig(
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        attention_head_dim=8,
        emb_channels=48,
        num_classes=3,
    )
    network = VDMUNet(config, image_size=8)
    assert network.time_embed.linear_2.out_features == 48 and network.cond_embed.label_embed.embedding_dim == 48
    z = torch.randn(2, 3, 3, 8, 8)
    assert network(z, torch.tensor([0.5, -1.0]), label=torch.tensor([0, 2])).shape == z.shape
    default = VDMUNet(
        VDMUNetConfig(
            model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), attention_head_dim=8
        ),
        image_size=8,
    )
    assert default.time_embed.linear_2.out_features == 32
    with pytest.raises(ValueError, match="emb_channels"):
        VDMUNetConfig(emb_channels=0)
