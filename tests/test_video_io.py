"""The video writer: mp4 and gif written by PyAV, read back with decord (mp4) and PyAV (gif)."""

from __future__ import annotations

import re

import av
import decord
import numpy as np
import pytest
import torch

from video_diffusion_lab.video_io import clip_grid, to_uint8_frames, write_video

# decord 0.6 cannot return frames whose width divides 144 (2, 4, ..., 16, 24, 48, 72: dmlc/decord#336, a
# "from_size == to_size" error); the widths read back with decord below avoid those, and PyAV checks the rest.


def grey_ramp(t: int = 5, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    """Frame i is a flat grey at level -0.8 + 0.4 i: distinct frames that survive lossy coding."""
    levels = torch.linspace(-0.8, 0.8, t).reshape(t, 1, 1, 1)
    return levels.expand(t, c, h, w).clone()


def read_av(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_mp4_round_trip(tmp_path, scale):
    video = grey_ramp()
    path = write_video(tmp_path / "clip.mp4", video, fps=4, scale=scale)
    assert path == tmp_path / "clip.mp4" and path.stat().st_size > 0
    reader = decord.VideoReader(str(path))
    assert len(reader) == 5
    assert reader.get_avg_fps() == pytest.approx(4.0)
    frames = reader.get_batch(list(range(5))).asnumpy()
    assert frames.shape == (5, 8 * scale, 10 * scale, 3)
    expected = to_uint8_frames(video, scale).astype(np.float64)
    assert np.abs(frames.astype(np.float64) - expected).mean() < 4


@pytest.mark.parametrize("height,width", [(7, 9), (5, 14), (8, 13), (9, 19)])
def test_mp4_odd_sizes_are_padded_to_even(tmp_path, height, width):
    video = grey_ramp(t=3, h=height, w=width)
    path = write_video(tmp_path / "odd.mp4", video)
    reader = decord.VideoReader(str(path))
    assert len(reader) == 3
    frames = reader.get_batch([0, 1, 2]).asnumpy()
    assert frames.shape == (3, height + height % 2, width + width % 2, 3)
    # the padding replicates the last row / column, so the padded frame is still flat grey
    expected = to_uint8_frames(video)[:, :1, :1].astype(np.float64)
    assert np.abs(frames.astype(np.float64) - expected).max() < 6


@pytest.mark.parametrize("size", [16, 48])
def test_mp4_at_decord_unfriendly_widths_decodes_with_pyav(tmp_path, size):
    video = grey_ramp(t=4, h=size, w=size)
    frames = read_av(write_video(tmp_path / "square.mp4", video))
    assert len(frames) == 4 and frames[0].shape == (size, size, 3)
    assert np.abs(np.stack(frames).astype(np.float64) - to_uint8_frames(video)).mean() < 4


@pytest.mark.parametrize("scale", [1, 2])
def test_gif_round_trip(tmp_path, scale):
    video = grey_ramp()
    path = write_video(tmp_path / "clip.gif", video, scale=scale)
    frames = read_av(path)
    assert len(frames) == 5
    assert frames[0].shape == (8 * scale, 10 * scale, 3)
    # rgb8 is a coarse palette: levels survive only approximately, but in order.
    means = [f.mean() for f in frames]
    assert all(a < b for a, b in zip(means, means[1:]))
    expected = to_uint8_frames(video, scale).astype(np.float64)
    assert np.abs(np.stack(frames).astype(np.float64) - expected).mean() < 40


def test_gif_of_odd_size_keeps_its_size(tmp_path):
    frames = read_av(write_video(tmp_path / "odd.gif", grey_ramp(t=2, h=7, w=9)))
    assert len(frames) == 2 and frames[0].shape == (7, 9, 3)


def test_single_channel_clip_is_written_as_rgb(tmp_path):
    path = write_video(tmp_path / "grey.mp4", grey_ramp(c=1))
    frame = decord.VideoReader(str(path))[0].asnumpy()
    assert frame.shape == (8, 10, 3)
    assert np.abs(frame[..., 0].astype(int) - frame[..., 2].astype(int)).max() <= 3  # grey stays grey


def test_writer_creates_parent_directories_and_accepts_strings(tmp_path):
    path = write_video(str(tmp_path / "a" / "b" / "clip.GIF"), grey_ramp(t=2))
    assert path.exists() and len(read_av(path)) == 2


@pytest.mark.parametrize("name", ["clip.avi", "clip.webm", "clip"])
def test_unsupported_suffix_raises_naming_the_path(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ValueError, match=re.escape(str(path))):
        write_video(path, grey_ramp(t=2))
    assert not path.exists()


def test_to_uint8_frames_mapping():
    video = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)
    frames = to_uint8_frames(video)
    assert frames.dtype == np.uint8 and frames.shape == (1, 2, 2, 3)
    assert frames[0, :, :, 0].tolist() == [[0, 128], [255, 255]]
    assert (frames[..., 0] == frames[..., 2]).all()
    scaled = to_uint8_frames(video, scale=2)
    assert scaled.shape == (1, 4, 4, 3)
    assert scaled[0, :2, :2, 0].tolist() == [[0, 0], [0, 0]] and scaled[0, 3, 3, 0] == 255


@pytest.mark.parametrize("separator", [0, 1, 3])
def test_clip_grid_width(separator):
    clips = [torch.full((4, 3, 5, 6), float(i) - 1) for i in range(3)]
    grid = clip_grid(clips, separator=separator)
    assert grid.shape == (4, 3, 5, 3 * 6 + 2 * separator)
    assert torch.equal(grid[..., :6], clips[0])
    assert torch.equal(grid[..., 6 + separator : 12 + separator], clips[1])
    assert torch.equal(grid[..., -6:], clips[2])
    if separator:
        assert (grid[..., 6 : 6 + separator] == 1).all()


def test_clip_grid_of_one_clip_is_the_clip():
    clip = torch.randn(2, 1, 3, 3)
    assert torch.equal(clip_grid([clip]), clip)
