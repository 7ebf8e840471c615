"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features..."), AlexNet v0.1.

Re-implements the network of the ``lpips`` package (net='alex', version='0.1') without
torchvision: an AlexNet feature stack whose parameter names match torchvision's
``alexnet`` checkpoint (``features.0.weight`` ...), tapped after each of its five
ReLUs; the package's input scaling layer; channel-wise unit normalisation of each
tap; squared differences weighted by the learned 1x1 "lin" layers from ``alex.pth``
(keys ``lin{k}.model.1.weight``); spatial mean; sum over the five layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from .weights import LPIPS_LINEAR, TORCHVISION_ALEXNET, resolve_spec

# ScalingLayer constants of lpips v0.1: (x - shift) / scale maps [-1, 1] inputs to
# roughly ImageNet-normalised values.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_CHANNELS = (64, 192, 384, 256, 256)
# Indices in torchvision's alexnet.features after which LPIPS taps the activations (ReLUs).
_TAPS = (1, 4, 7, 9, 11)


class AlexNetFeatures(nn.Module):
    """torchvision ``alexnet().features`` up to the last ReLU, returning the five ReLU outputs."""

    def __init__(self) -> None:
        super().__init__()
        # Same indices as torchvision (so its state_dict keys load); the final max-pool
        # (index 12) is never reached by LPIPS and is omitted.
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        return taps


class LinearHead(nn.Module):
    """One lpips "NetLinLayer": dropout (inactive in eval) + bias-free 1x1 conv to 1 channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def unit_normalize(feats: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each spatial feature vector by its L2 norm over channels (lpips' normalize_tensor)."""
    return feats / (feats.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance, AlexNet v0.1. ``forward(x, y)`` with (N, 3, H, W) in [-1, 1] -> (N,).

    Weights come from two local files resolved by ``metrics.weights``: torchvision's
    AlexNet checkpoint (``alexnet_path`` / env ``LPIPS_ALEXNET_WEIGHTS``) and lpips'
    ``alex.pth`` (``linear_path`` / env ``LPIPS_LINEAR_WEIGHTS``). ``pretrained=False``
    leaves random weights (tests only). Parameters are frozen and the module is in eval mode.
    """

    def __init__(
        self,
        alexnet_path: str | None = None,
        linear_path: str | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (LinearHead(c) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        if pretrained:
            self.load_pretrained(alexnet_path, linear_path)
        self.requires_grad_(False)
        self.eval()

    @property
    def lins(self) -> list[LinearHead]:
        return [self.lin0, self.lin1, self.lin2, self.lin3, self.lin4]

    def load_pretrained(self, alexnet_path: str | None = None, linear_path: str | None = None) -> None:
        # Resolve both first so a missing file is reported before anything is loaded.
        alex_file = resolve_spec(TORCHVISION_ALEXNET, alexnet_path)
        lin_file = resolve_spec(LPIPS_LINEAR, linear_path)
        alex_state = torch.load(alex_file, map_location="cpu", weights_only=True)
        # The torchvision file also holds the classifier; only the conv features are used.
        self.net.load_state_dict({k: v for k, v in alex_state.items() if k.startswith("features.")})
        lin_state = torch.load(lin_file, map_location="cpu", weights_only=True)
        own = {f"lin{k}.model.1.weight" for k in range(len(_CHANNELS))}
        if set(lin_state) != own:
            raise RuntimeError(f"{lin_file}: expected keys {sorted(own)}, found {sorted(lin_state)}")
        for k, head in enumerate(self.lins):
            head.model[1].weight.data.copy_(lin_state[f"lin{k}.model.1.weight"])

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (N, 3, H, W) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for head, a, b in zip(self.lins, fx, fy):
            diff = (unit_normalize(a) - unit_normalize(b)) ** 2
            total = total + head(diff).mean(dim=(1, 2, 3))
        return total


class LearnedPerceptualVideoSimilarity(Metric):
    """Mean LPIPS over predicted frames (and over samples, if several are given).

    ``update(preds, target, latent=None)``: ``preds`` is (B, T, C, H, W) or
    (N, B, T, C, H, W) (N samples per test video), ``target`` (B, T, C, H, W), all in
    [-1, 1]; ``latent`` (B, T) bool selects the predicted frames (default: all).
    Single-channel videos are repeated to RGB. Sum/count states in float64, DDP exact.
    The LPIPS network is built on first use (or passed in as ``net``) and kept out of
    ``state_dict``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    lpips_sum: Tensor
    count: Tensor

    def __init__(
        self,
        alexnet_path: str | None = None,
        linear_path: str | None = None,
        frame_batch_size: int = 64,
        net: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alexnet_path, self.linear_path = alexnet_path, linear_path
        self.frame_batch_size = frame_batch_size
        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "_net_is_user", net is not None)
        self.add_state("lpips_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def load_network(self) -> nn.Module:
        net = self._net if self._net is not None else LPIPS(self.alexnet_path, self.linear_path)
        net = net.to(self.device).eval()
        object.__setattr__(self, "_net", net)
        return net

    @torch.no_grad()
    def update(self, preds: Tensor, target: Tensor, latent: Tensor | None = None) -> None:
        if preds.ndim == 5:
            preds = preds.unsqueeze(0)
        if preds.ndim != 6 or preds.shape[1:] != target.shape:
            raise ValueError(
                f"expected preds (B, T, C, H, W) or (N, B, T, C, H, W) matching target (B, T, C, H, W), "
                f"got {tuple(preds.shape)} and {tuple(target.shape)}"
            )
        if latent is None:
            latent = torch.ones(target.shape[:2], dtype=torch.bool)
        mask = latent.to(device=target.device, dtype=torch.bool)
        n = preds.shape[0]
        fake = preds[:, mask].flatten(0, 1)  # (N*K, C, H, W)
        real = target[mask]
        real = real.unsqueeze(0).expand(n, *real.shape).flatten(0, 1)
        if fake.shape[1] == 1:
            fake, real = fake.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1)
        net = self.load_network()
        # Scores must not depend on the trainer's precision setting: no autocast here.
        with torch.autocast(device_type=self.device.type, enabled=False):
            for a, b in zip(fake.split(self.frame_batch_size), real.split(self.frame_batch_size)):
                d = net(a.to(self.device, torch.float32), b.to(self.device, torch.float32))
                self.lpips_sum += d.to(torch.float64).sum()
                self.count += d.numel()

    def compute(self) -> Tensor:
        return self.lpips_sum / self.count

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if not state.get("_net_is_user", False):
            state["_net"] = None
        return state


def lpips_embedding(alexnet_path: str | None = None, linear_path: str | None = None):
    """Frames (N, C, H, W) in [-1, 1] -> (N, D) vectors whose squared distance is the LPIPS distance (AlexNet v0.1):
    per layer, channel-normalised features scaled by sqrt(w_lin) / sqrt(H W), concatenated. FDM's adaptive schemes
    choose observed frames by it. Needs the local LPIPS weight files."""
    net = LPIPS(alexnet_path, linear_path)

    def embed(frames: Tensor) -> Tensor:
        net.to(frames.device)
        x = frames.float().expand(-1, 3, -1, -1) if frames.shape[1] == 1 else frames.float()
        if x.shape[-1] < 32:  # AlexNet's stride-4 stem needs a minimum size
            x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        parts = []
        for head, feats in zip(net.lins, net.net((x - net.shift) / net.scale)):
            weight = head.model[1].weight.clamp(min=0).sqrt()  # (1, C, 1, 1)
            scaled = unit_normalize(feats) * weight / (feats.shape[-1] * feats.shape[-2]) ** 0.5
            parts.append(scaled.flatten(1))
        return torch.cat(parts, dim=1)

    return embed
