"""Every softmax attention goes through ``F.scaled_dot_product_attention`` (masks and biases as its attn_mask), and
gives what an explicit softmax(q k^T / sqrt(d) + bias) v gives, within fp32 tolerance.

The two attentions that do not: FDM's temporal attention (its value-side relative position term needs the attention
weights, which SDPA does not return; checked against the released code in test_official_equivalence.py) and RVD's
linear attention (not a softmax over q.k)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.networks import blocks, fdm_unet, vdm_unet
from video_diffusion_lab.networks.blocks import UNetContext
from video_diffusion_lab.networks.fdm_unet import FDMUNet, FDMUNetConfig
from video_diffusion_lab.networks.ramvid_unet import RaMViDUNet, RaMViDUNetConfig
from video_diffusion_lab.networks.vdm_unet import VDMUNet, VDMUNetConfig, temporal_attention_allowed


def randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module.eval()


def softmax_attention(q, k, v, bias=None):
    """The explicit reference: softmax(q k^T / sqrt(d) + bias) v."""
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1) @ v


def test_ramvid_space_time_attention_equals_explicit_softmax():
    attention = randomised(blocks.SelfAttention(16, num_heads=4, qkv_layout="heads three d"))
    x = torch.randn(2, 16, 3, 4, 4)
    flat = x.reshape(2, 16, -1)
    qkv = attention.qkv(attention.norm(flat))
    q, k, v = rearrange(qkv, "b (heads three d) n -> three b heads n d", heads=4, three=3)
    ref = attention.proj_out(rearrange(softmax_attention(q, k, v), "b heads n d -> b (heads d) n"))
    with torch.no_grad():
        torch.testing.assert_close(attention(x), (flat + ref).reshape(x.shape).detach())


def test_fdm_spatial_attention_equals_explicit_softmax():
    attention = randomised(fdm_unet.SpatialAttention(16, num_heads=2))
    x = torch.randn(6, 16, 4, 4)
    h = rearrange(attention.norm(x), "n c y x -> n (y x) c")
    q, k, v = rearrange(attention.qkv(h), "n p (three heads d) -> three n heads p d", three=3, heads=2)
    ref = h + attention.proj_out(rearrange(softmax_attention(q, k, v), "n heads p d -> n p (heads d)"))
    with torch.no_grad():
        torch.testing.assert_close(attention(x), rearrange(ref, "n (y x) c -> n c y x", y=4).detach())


def test_vdm_spatial_attention_equals_explicit_softmax():
    attention = randomised(vdm_unet.SpatialAttention(16, head_dim=8))
    x = torch.randn(6, 16, 4, 4)
    q, k, v = rearrange(
        attention.qkv(attention.norm(x)), "n (three heads d) y x -> three n heads (y x) d", three=3, heads=2
    )
    ref = x + attention.proj_out(rearrange(softmax_attention(q, k, v), "n heads (y x) d -> n (heads d) y x", y=4))
    with torch.no_grad():
        torch.testing.assert_close(attention(x), ref.detach())


def test_vdm_temporal_attention_with_segments_and_padding_equals_explicit_softmax():
    b, t = 2, 5
    attention = randomised(vdm_unet.TemporalAttention(16, head_dim=8, max_distance=3))
    x = torch.randn(b * t, 16, 4, 4)
    frame_indices = torch.tensor([[0, 1, 2, 9, 30], [4, 2, 7, 1, 0]])
    segments = torch.tensor([[0, 0, 0, 1, 2], [0, 0, 0, 0, 0]])
    padding = torch.tensor([[False] * 5, [False, False, False, False, True]])
    allowed = temporal_attention_allowed(segments, padding)
    ctx = UNetContext(emb=torch.zeros(b * t, 1), batch=b, frame_indices=frame_indices, attn_mask=allowed)
    q, k, v = rearrange(
        attention.qkv(attention.norm(x)), "(b t) (three heads d) y x -> three b (y x) heads t d", b=b, three=3, heads=2
    )
    bias = attention.relative_position(frame_indices).masked_fill(~allowed[:, None], float("-inf"))
    out = softmax_attention(q, k, v, bias[:, None])
    ref = x + attention.proj_out(rearrange(out, "b (y x) heads t d -> (b t) (heads d) y x", y=4))
    with torch.no_grad():
        torch.testing.assert_close(attention(x, ctx), ref.detach())
    assert attention.relative_position.table.weight.abs().sum() > 0  # the bias is not trivially zero here


class CountingSDPA:
    def __init__(self):
        self.calls, self.masked = 0, 0
        self.sdpa = F.scaled_dot_product_attention

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.masked += kwargs.get("attn_mask") is not None
        return self.sdpa(*args, **kwargs)


def networks_and_their_attentions():
    ramvid = RaMViDUNet(
        RaMViDUNetConfig(
            model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8, 4), num_heads=2
        ),
        image_size=8,
    )
    fdm = FDMUNet(
        FDMUNetConfig(
            model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8, 4), num_heads=2
        ),
        image_size=8,
        max_frames=4,
    )
    vdm = VDMUNet(
        VDMUNetConfig(
            model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8, 4), attention_head_dim=4
        ),
        image_size=8,
    )
    count = lambda net, kind: sum(isinstance(m, kind) for m in net.modules())  # noqa: E731
    return [
        # (network, SDPA calls expected, of which with a mask)
        (ramvid, count(ramvid, blocks.SelfAttention), 0),
        (fdm, count(fdm, fdm_unet.SpatialAttention), 0),  # the temporal attentions are explicit (see module doc)
        (
            vdm,
            count(vdm, vdm_unet.SpatialAttention) + count(vdm, vdm_unet.TemporalAttention),
            count(vdm, vdm_unet.TemporalAttention),
        ),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["ramvid", "fdm", "vdm"])
def test_every_softmax_attention_of_the_networks_calls_sdpa(index, monkeypatch):
    network, expected, expected_masked = networks_and_their_attentions()[index]
    counter = CountingSDPA()
    monkeypatch.setattr(F, "scaled_dot_product_attention", counter)
    z = torch.randn(2, 4, 3, 8, 8)
    with torch.no_grad():
        network(z, torch.tensor([3.0, 9.0]), FrameMask.from_observed(torch.zeros(2, 4, dtype=torch.bool)))
    assert expected > 0
    assert (counter.calls, counter.masked) == (expected, expected_masked)
