"""RaMViD's 3D U-Net: shapes, zero initialisation, argument checks, temporal mixing and the paper-size configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from video_diffusion_lab.diffusion.masks import task_mask
from video_diffusion_lab.networks import RaMViDUNet, RaMViDUNetConfig

TINY = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), num_heads=2)


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(channels: int = 3, **overrides) -> RaMViDUNet:
    torch.manual_seed(0)
    return RaMViDUNet(RaMViDUNetConfig(**{**TINY, **overrides}), image_size=8, channels=channels)


def randomise(model: nn.Module) -> nn.Module:
    """Re-initialise every zero-initialised weight so that the whole network is active."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.1)
    return model


def inputs(b=2, t=4, c=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, c, size, size, generator=g), torch.tensor([10.0, 700.0])[:b]


@pytest.mark.parametrize("t", [1, 3, 4])
def test_output_shape_equals_input_shape(t):
    z, time = inputs(t=t)
    out = randomise(tiny())(z, time, task_mask("prediction", 2, t, 1) if t > 1 else None)
    assert out.shape == z.shape
    assert torch.isfinite(out).all()


def test_single_channel_videos():
    z, time = inputs(c=1)
    assert randomise(tiny(channels=1))(z, time).shape == z.shape


def test_output_is_zero_at_initialisation():
    z, time = inputs()
    out = tiny()(z, time)
    assert torch.equal(out, torch.zeros_like(z))


def test_gradient_reaches_the_out_layer_at_initialisation():
    model = tiny()
    z, time = inputs()
    (model(z, time) - z).square().mean().backward()
    assert model.out.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("image_size,channel_mult", [(10, (1, 2, 2)), (12, (1, 2, 2, 2)), (7, (1, 2))])
def test_image_size_must_be_divisible_by_downsampling_factor(image_size, channel_mult):
    with pytest.raises(ValueError, match="image_size"):
        RaMViDUNet(
            RaMViDUNetConfig(model_channels=8, channel_mult=channel_mult, attention_resolutions=()),
            image_size=image_size,
        )


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="num_heads"):
        tiny(num_heads=3)
    with pytest.raises(ValueError, match="num_heads_upsample"):
        tiny(num_heads_upsample=3)


def test_attention_resolutions_must_be_levels_of_the_unet():
    with pytest.raises(ValueError, match="attention_resolutions"):
        tiny(attention_resolutions=(5,))


def test_config_checks_name_the_field():
    for field, value in [("model_channels", 0), ("num_res_blocks", 0), ("channel_mult", ()), ("dropout", 1.5)]:
        with pytest.raises(ValueError, match=field):
            RaMViDUNetConfig(**{field: value})
    assert RaMViDUNetConfig(channel_mult=[1, 2]) == RaMViDUNetConfig(channel_mult=(1, 2))  # YAML lists


def test_every_convolution_mixes_neighbouring_frames():
    """The released network's convolutions are all 3x3x3, the resamplers' included (the 1x1x1 skips aside)."""
    for name, module in tiny().named_modules():
        if isinstance(module, nn.Conv3d) and not name.endswith("skip"):
            assert module.kernel_size == (3, 3, 3), name


def test_temporal_mixing_after_one_optimisation_step():
    model = tiny()
    z, time = inputs(t=5)
    (model(z, time) - torch.randn_like(z)).square().mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    changed = z.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        a, b = model(z, time), model(changed, time)
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_temporal_mixing_reaches_distant_frames():
    model = randomise(tiny())
    z, time = inputs(t=6)
    changed = z.clone()
    changed[:, 0] += 1.0
    with torch.no_grad():
        a, b = model(z, time), model(changed, time)
    # 3x3x3 convolutions and space-time attention carry frame 0 to the last frame.
    assert (a[:, -1] - b[:, -1]).abs().max() > 1e-4


def test_examples_do_not_mix():
    model = randomise(tiny())
    z, time = inputs()
    changed = z.clone()
    changed[1] += 1.0
    with torch.no_grad():
        assert torch.allclose(model(z, time)[0], model(changed, time)[0], atol=1e-5)


def test_time_conditions_the_output():
    model = randomise(tiny())
    z, _ = inputs()
    with torch.no_grad():
        a = model(z, torch.tensor([0.0, 0.0]))
        b = model(z, torch.tensor([900.0, 900.0]))
    assert not torch.allclose(a, b)


def test_mask_argument_is_optional_and_ignored():
    model = randomise(tiny())
    z, time = inputs()
    with torch.no_grad():
        assert torch.equal(model(z, time), model(z, time, task_mask("infilling", 2, 4, 2)))


# The released code's counts at the released flags (image_size 64, num_channels 128, scale_time_dim 0, script
# defaults otherwise), measured by building diffusion_openai's create_model_and_diffusion
# (benchmarks/parameter_counts.py).
@pytest.mark.parametrize("name,num_res_blocks,official", [("kinetics600", 3, 308_343_427), ("bair", 2, 235_071_875)])
def test_paper_configs_have_the_released_parameter_count(name, num_res_blocks, official):
    with torch.device("meta"):
        model = RaMViDUNet(RaMViDUNetConfig(num_res_blocks=num_res_blocks), image_size=64, channels=3)
    count = sum(p.numel() for p in model.parameters())
    print(f"RaMViD {name}: {count:,} parameters (released code: {official:,})")
    assert count == official
