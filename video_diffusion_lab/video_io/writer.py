"""The project's own video writer: mp4 (H.264) or gif through PyAV, so W&B gets a file and needs no moviepy."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor


def to_uint8_frames(video: Tensor, scale: int = 1) -> np.ndarray:
    """(T, C, H, W) in [-1, 1] -> (T, H*scale, W*scale, 3) uint8, grey clips repeated to RGB."""
    frames = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if frames.shape[1] == 1:
        frames = frames.repeat(1, 3, 1, 1)
    if scale > 1:
        frames = frames.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return frames.permute(0, 2, 3, 1).numpy()


def clip_grid(videos: list[Tensor], separator: int = 1) -> Tensor:
    """Clips of equal shape (T, C, H, W) side by side, e.g. [conditioning, sample, ground truth]."""
    t, c, h, _ = videos[0].shape
    gap = torch.ones(t, c, h, separator, dtype=videos[0].dtype, device=videos[0].device)
    parts: list[Tensor] = []
    for i, v in enumerate(videos):
        parts += [gap, v] if i else [v]
    return torch.cat(parts, dim=3)


def write_video(path: str | Path, video: Tensor, fps: int = 4, scale: int = 1) -> Path:
    """Write a (T, C, H, W) clip in [-1, 1] to ``path``; the suffix (.mp4 or .gif) picks the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = to_uint8_frames(video, scale)
    height, width = frames.shape[1:3]
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"{path}: unsupported video format {suffix!r}; use .mp4 or .gif")
    with av.open(str(path), mode="w") as container:
        if suffix == ".mp4":
            stream = container.add_stream("libx264", rate=fps)
            stream.pix_fmt = "yuv420p"
            # yuv420p needs even sides: pad by replicating the last row/column.
            pad_h, pad_w = height % 2, width % 2
            if pad_h or pad_w:
                frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            stream.options = {"crf": "18"}
        else:
            stream = container.add_stream("gif", rate=fps)
            stream.pix_fmt = "rgb8"
        stream.height, stream.width = frames.shape[1:3]
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """An RGB uint8 (H, W, 3) image as PNG, through PyAV (no imaging library needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    return path
