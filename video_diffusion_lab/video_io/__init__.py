"""Video files: encoding clips (PyAV) for logging and ``predict`` outputs; reading clips (mp4, gif, avi, .npy, .npz)."""

from video_diffusion_lab.video_io.reader import CLIP_SUFFIXES, UnreadableClip, read_clip
from video_diffusion_lab.video_io.writer import clip_grid, to_uint8_frames, write_png, write_video

__all__ = ["CLIP_SUFFIXES", "UnreadableClip", "clip_grid", "read_clip", "to_uint8_frames", "write_png", "write_video"]
