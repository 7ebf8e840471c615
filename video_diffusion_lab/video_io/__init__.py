"""Encoding clips to video files (PyAV), for logging and for ``predict`` outputs."""

from video_diffusion_lab.video_io.writer import clip_grid, to_uint8_frames, write_png, write_video

__all__ = ["clip_grid", "to_uint8_frames", "write_png", "write_video"]
