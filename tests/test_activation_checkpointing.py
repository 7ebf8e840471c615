"""Activation checkpointing per U-Net level (``network.checkpoint_levels``): the same outputs, loss and gradients as
without, fewer activations kept for the backward pass, the same state dict, and a clear error for a level the U-Net
does not have."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_methods import randomise
from video_diffusion_lab.diffusion import FrameMask
from video_diffusion_lab.networks import FDMUNet, FDMUNetConfig, RaMViDUNet, RaMViDUNetConfig, VDMUNet, VDMUNetConfig

UNET = dict(model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(4,), dropout=0.3)


def build(name: str, checkpoint_levels: tuple[int, ...] = ()):
    unet = dict(UNET, checkpoint_levels=checkpoint_levels)
    if name == "ramvid":
        return RaMViDUNet(RaMViDUNetConfig(num_heads=2, **unet), image_size=8)
    if name == "fdm":
        return FDMUNet(FDMUNetConfig(num_heads=2, **unet), image_size=8, max_frames=4)
    return VDMUNet(VDMUNetConfig(attention_head_dim=4, **unet), image_size=8)


def inputs():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 3, 8, 8, generator=generator)
    observed = torch.tensor([[True, False, False, False], [False] * 4])
    mask = FrameMask.from_observed(observed, torch.arange(4).expand(2, 4))
    return z, torch.tensor([3.0, 700.0]), mask


def saved_bytes(network: torch.nn.Module, z, time, mask) -> tuple[torch.Tensor, int]:
    """The output and the bytes of the tensors autograd keeps for the backward pass of one forward pass."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = network(z, time, mask)
    return out, total


@pytest.mark.parametrize("name", ["ramvid", "fdm", "vdm"])
def test_checkpointed_levels_give_the_same_loss_and_gradients_with_less_saved(name: str) -> None:
    plain = randomise(build(name)).train()
    checkpointed = build(name, checkpoint_levels=(0, 1, 2)).train()
    assert checkpointed.state_dict().keys() == plain.state_dict().keys()
    checkpointed.load_state_dict(plain.state_dict())
    z, time, mask = inputs()
    results = []
    for network in (plain, checkpointed):
        torch.manual_seed(1)  # the same dropout masks: the recomputation must redraw them identically
        out, kept = saved_bytes(network, z, time, mask)
        loss = out.square().mean()
        loss.backward()
        results.append((loss.detach(), kept, {n: p.grad.clone() for n, p in network.named_parameters()}))
    (loss_a, kept_a, grads_a), (loss_b, kept_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=0)
    for name_, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name_], grad, rtol=1e-5, atol=1e-6, msg=name_)
    assert kept_b < kept_a / 4, f"checkpointing kept {kept_b} bytes for backward, without {kept_a}"


def test_checkpointing_only_the_listed_levels_and_only_with_gradients() -> None:
    network = build("vdm", checkpoint_levels=(1,))
    skeleton = [*network.input_blocks, network.middle_block, *network.output_blocks]
    flagged = [block for block in skeleton if block.activation_checkpointing]
    # level 1 of (1, 2, 2) with one res block: its encoder block and downsample, its two decoder blocks
    assert len(flagged) == 4 and not network.middle_block.activation_checkpointing
    plain = randomise(build("vdm")).eval()
    network.load_state_dict(plain.state_dict())
    z, time, mask = inputs()
    with torch.no_grad():  # no recomputation without gradients: the plain forward pass
        torch.testing.assert_close(network.eval()(z, time, mask), plain(z, time, mask), rtol=0, atol=0)


def test_unknown_level_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"checkpoint_levels: \[3\] are not levels"):
        build("ramvid", checkpoint_levels=(0, 3))
