"""Reading clips from files: mp4, gif and avi through PyAV, uint8 arrays saved with numpy (.npy, .npz).

Every reader returns uint8 frames (T, H, W, 3), the layout the writer (``writer.to_uint8_frames``) produces. A file
that cannot be read as such a clip raises ``UnreadableClip`` naming the file and the reason, so that a caller scoring
a folder can skip it and list it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".gif", ".avi")
ARRAY_SUFFIXES = (".npy", ".npz")
CLIP_SUFFIXES = VIDEO_SUFFIXES + ARRAY_SUFFIXES
NPZ_KEY = "video"  # the array read from an .npz that holds several


class UnreadableClip(ValueError):
    """A file that is not a readable clip: it does not decode, holds no frames, or is not uint8 (T, H, W, 3)."""


def read_clip(path: str | Path) -> np.ndarray:
    """The clip in ``path`` as uint8 frames (T, H, W, 3); the suffix picks the reader."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        frames = _decode_video(path)
    elif suffix in ARRAY_SUFFIXES:
        frames = _load_array(path)
    else:
        raise UnreadableClip(f"{path}: unsupported file type {suffix!r}; clips are {', '.join(CLIP_SUFFIXES)}")
    return _checked(frames, path)


def _decode_video(path: Path) -> np.ndarray:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnreadableClip(f"{path}: the file has no video stream")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except av.error.FFmpegError as err:
        raise UnreadableClip(f"{path}: cannot decode ({err})") from err
    if not frames:
        raise UnreadableClip(f"{path}: the video stream holds no frames")
    return np.stack(frames)


def _load_array(path: Path) -> np.ndarray:
    try:
        # allow_pickle=False: an array file must never run code.
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = list(loaded.files)
                if len(names) != 1 and NPZ_KEY not in names:
                    raise UnreadableClip(f"{path}: holds arrays {names}; store one array, or name the clip {NPZ_KEY!r}")
                return loaded[NPZ_KEY if NPZ_KEY in names else names[0]]
        return loaded
    except (OSError, EOFError, ValueError) as err:
        if isinstance(err, UnreadableClip):
            raise
        raise UnreadableClip(f"{path}: cannot load the array ({err})") from err


def _checked(frames: np.ndarray, path: Path) -> np.ndarray:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise UnreadableClip(
            f"{path}: expected uint8 frames (T, H, W, 3), got {frames.dtype} array of shape {tuple(frames.shape)}"
        )
    return np.ascontiguousarray(frames)
