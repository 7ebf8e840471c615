"""Inception-I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?").

Module and parameter names follow the pytorch-i3d port (piergiaj/pytorch-i3d) that
VideoGPT (videogpt/fvd/pytorch_i3d.py) and TATS (tats/fvd/) load from
``i3d_pretrained_400.pt``, so that file loads with ``load_state_dict``. As in that
port, every conv and pool uses TensorFlow-style "SAME" padding computed from the
input size at run time, pools pad with zeros (their inputs are post-ReLU, so this
equals TF's -inf padding), and the output is the 400-way Kinetics logits averaged
over the remaining time steps: the features FVD is computed on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) for one axis; the extra pixel goes at the back."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same_3d(x: Tensor, kernel: Sequence[int], stride: Sequence[int]) -> Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (same_padding(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    # F.pad lists the last axis first.
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """Conv3d ("SAME" padded, no bias) -> BatchNorm3d -> ReLU; the logits layer drops BN/ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int] = (1, 1, 1),
        stride: Sequence[int] = (1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        # eps matches the port; momentum is irrelevant in eval mode.
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-5, momentum=0.001) if batch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(pad_same_3d(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(pad_same_3d(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels (names b0, b1a/b1b, b2a/b2b, b3a/b3b)."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (endpoint name, branch widths) of the Inception-v1 blocks, in order; pools sit between them.
_MIXED_WIDTHS: dict[str, tuple[int, ...]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


class InceptionI3d(nn.Module):
    """Kinetics-400 I3D. Input (B, 3, T, 224, 224) in [-1, 1]; output (B, num_classes) logits.

    The final 2x7x7 average pool expects 224x224 frames and T >= 9 (time is
    downsampled 8x before it); 16-frame clips are the FVD convention.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(192, _MIXED_WIDTHS["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(self.Mixed_3b.out_channels, _MIXED_WIDTHS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock(self.Mixed_3c.out_channels, _MIXED_WIDTHS["Mixed_4b"])
        self.Mixed_4c = InceptionBlock(self.Mixed_4b.out_channels, _MIXED_WIDTHS["Mixed_4c"])
        self.Mixed_4d = InceptionBlock(self.Mixed_4c.out_channels, _MIXED_WIDTHS["Mixed_4d"])
        self.Mixed_4e = InceptionBlock(self.Mixed_4d.out_channels, _MIXED_WIDTHS["Mixed_4e"])
        self.Mixed_4f = InceptionBlock(self.Mixed_4e.out_channels, _MIXED_WIDTHS["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(self.Mixed_4f.out_channels, _MIXED_WIDTHS["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(self.Mixed_5b.out_channels, _MIXED_WIDTHS["Mixed_5c"])
        # Plain (unpadded) average pool: 7x7 spatial at 224 input, 2 steps in time.
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)  # identity in eval mode; kept for parity with the port
        self.logits = Unit3D(self.Mixed_5c.out_channels, num_classes, batch_norm=False, relu=False, bias=True)
        self._trunk = (
            "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3",
            "MaxPool3d_3a_3x3", "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3",
            "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
            "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
        )  # fmt: skip

    def features(self, x: Tensor) -> Tensor:
        """Pooled Mixed_5c activations, (B, 1024, T', H', W')."""
        for name in self._trunk:
            x = getattr(self, name)(x)
        return self.avg_pool(x)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.logits(self.dropout(self.features(x)))
        # The port squeezes the (1x1) spatial axes and averages over time; averaging
        # over all three is the same there and still defined for other sizes.
        return logits.flatten(2).mean(dim=2)


def load_i3d_state_dict(model: InceptionI3d, path: str, map_location: str | torch.device = "cpu") -> InceptionI3d:
    """Load ``i3d_pretrained_400.pt`` (a plain state_dict) strictly, tolerating only old-format BN keys."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    # Files saved from nn.DataParallel carry a "module." prefix.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Checkpoints from PyTorch < 0.4.1 have no BatchNorm num_batches_tracked counters (unused in eval).
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(
            f"{path} does not look like the pytorch-i3d Kinetics-400 state_dict: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    return model
