"""vdiff-metrics: score a folder of generated videos against a folder of real ones with the project's metrics.

    vdiff-metrics --real DIR --generated DIR [--fvd styleganv|tats|off] [--fvd-weights FILE] [--lpips]
                  [--given N] [--out FILE.json]

Clips are the mp4, gif and avi files and the uint8 ``.npy`` / ``.npz`` arrays (T, H, W, 3) under each folder
(``video_io.read_clip``). Files are paired by their path below the folder without the suffix (``real/a/0001.mp4``
with ``generated/a/0001.npy``); each pair gives PSNR / SSIM (and LPIPS with ``--lpips``) on the frames after the
first ``--given`` ones, and the copy-last-frame baseline on the real clip. FVD is computed between all real and all
generated clips, paired or not, and written with the same protocol record as ``vdiff test`` (weights file and sha256,
preprocessing, clip counts, frames per clip, given frames; no sampler: the videos come from elsewhere). The real
folder's I3D features are cached (``metrics.fvd_cache``), so scoring several generated folders against one real
folder computes them once.

Every clip must have the same shape; a different one stops the run with both files named. A file that cannot be read
is skipped and listed in the output. Weights are never downloaded: a missing file stops with where to put it.
The result is JSON, written to ``--out`` or printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.metrics.protocol import EvaluationProtocol, VideoEvaluation
from video_diffusion_lab.metrics.report import to_json, write_json
from video_diffusion_lab.video_io.reader import CLIP_SUFFIXES, UnreadableClip, read_clip


class ClipShapeMismatch(ValueError):
    """Two clips of different shapes: their metrics would not compare like with like."""


@dataclass
class ClipFolders:
    """The clip files of the two folders, paired by name; unreadable files are collected as they are met."""

    real: dict[str, Path]
    generated: dict[str, Path]
    skipped: list[dict[str, str]] = field(default_factory=list)
    reference: tuple[Path, tuple[int, ...]] | None = None  # the first clip read and its shape

    @property
    def paired(self) -> list[str]:
        return sorted(self.real.keys() & self.generated.keys())

    def read(self, path: Path) -> np.ndarray | None:
        """The clip, or None (and the file listed as skipped) when it cannot be read; stops on a shape mismatch."""
        try:
            clip = read_clip(path)
        except UnreadableClip as err:
            self.skipped.append({"file": str(path), "reason": str(err)})
            return None
        if self.reference is None:
            self.reference = (path, clip.shape)
        elif clip.shape != self.reference[1]:
            first, shape = self.reference
            raise ClipShapeMismatch(
                f"{path} has shape (T, H, W, C) = {clip.shape} but {first} has {shape}; every real and generated "
                "clip must have the same number of frames and size"
            )
        return clip


def list_clips(folder: Path) -> dict[str, Path]:
    """Clip files under ``folder`` by their path below it without the suffix."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    clips: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in CLIP_SUFFIXES:
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in clips:
                raise ValueError(f"{clips[name]} and {path} are two files for the same clip {name!r}; keep one")
            clips[name] = path
    if not clips:
        raise FileNotFoundError(f"{folder}: no clips ({', '.join(CLIP_SUFFIXES)}) in this folder")
    return clips


def to_video(clip: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in [-1, 1]; FVD's uint8 conversion gives the same bytes back."""
    return torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def batches(names: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


def score_folders(
    real_dir: Path,
    generated_dir: Path,
    *,
    fvd: str = "styleganv",
    fvd_weights: str | None = None,
    lpips: bool = False,
    given: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """The report of ``vdiff-metrics`` (see the module docstring)."""
    folders = ClipFolders(list_clips(real_dir), list_clips(generated_dir))
    first = next((c for c in map(folders.read, folders.real.values()) if c is not None), None)
    if first is None:
        raise ValueError(f"{real_dir}: none of its clips could be read: {folders.skipped}")
    folders.skipped.clear()  # the loop below reads (and lists) every file again
    num_frames = first.shape[0]
    if not 0 <= given < num_frames:
        raise ValueError(f"--given: must be in [0, {num_frames}) for clips of {num_frames} frames, got {given}")
    protocol = EvaluationProtocol(num_samples=1, fvd=fvd, fvd_weights_path=fvd_weights, lpips="on" if lpips else "off")
    evaluation = VideoEvaluation(protocol, num_frames)
    paired = folders.paired
    real_only = sorted(folders.real.keys() - folders.generated.keys())
    generated_only = sorted(folders.generated.keys() - folders.real.keys())
    scored_pairs = 0
    with tqdm(total=len(folders.real) + len(folders.generated), unit="file", disable=not progress) as bar:
        for names in batches(paired, batch_size):
            real, generated = [], []
            for name in names:
                real_clip, generated_clip = folders.read(folders.real[name]), folders.read(folders.generated[name])
                bar.update(2)
                if real_clip is not None and generated_clip is not None:
                    real.append(to_video(real_clip))
                    generated.append(to_video(generated_clip))
                elif real_clip is not None or generated_clip is not None:  # its partner is unreadable: FVD only
                    clip = real_clip if real_clip is not None else generated_clip
                    evaluation.update_fvd(to_video(clip)[None], real=real_clip is not None)
            if real:
                video = torch.stack(real)
                observed = torch.zeros(video.shape[:2], dtype=torch.bool)
                observed[:, :given] = True
                evaluation.update(torch.stack(generated)[None], video, FrameMask.from_observed(observed))
                scored_pairs += len(real)
        for side, names in (("real", real_only), ("generated", generated_only)):
            files = folders.real if side == "real" else folders.generated
            for chunk in batches(names, batch_size):
                clips = [c for c in (folders.read(files[name]) for name in chunk) if c is not None]
                bar.update(len(chunk))
                if clips:
                    evaluation.update_fvd(torch.stack([to_video(c) for c in clips]), real=side == "real")
    if scored_pairs == 0 and evaluation.fvd is None:
        raise ValueError(f"no readable pair of clips with the same name in {real_dir} and {generated_dir}")
    results = evaluation.compute() if scored_pairs else evaluation_without_pairs(evaluation)
    return {
        "real_dir": str(real_dir),
        "generated_dir": str(generated_dir),
        "clip_shape": list(folders.reference[1]) if folders.reference else None,
        "given_frames": given,
        "num_pairs": scored_pairs,
        "metrics_on": f"PSNR/SSIM/LPIPS on frames {given}.. of each pair, values scaled to [0, 1]; FVD on whole clips",
        **results,
        "unpaired": {"real_only": real_only, "generated_only": generated_only},
        "skipped": folders.skipped,
    }


def evaluation_without_pairs(evaluation: VideoEvaluation) -> dict[str, Any]:
    """FVD alone, when no file name is in both folders."""
    assert evaluation.fvd is not None
    record = evaluation.fvd_record()
    return {
        "model": {"fvd": float(evaluation.fvd.compute())},
        "fvd_protocol": record,
        "fvd_rank_deficient": record["rank_deficient"],
        "notes": {"frame_metrics": "not computed: no file name is in both folders"},
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vdiff-metrics",
        description="Score generated videos against real ones: PSNR/SSIM (and LPIPS) of files paired by name, FVD "
        "over all clips, with the protocol record of vdiff test.",
    )
    p.add_argument("--real", type=Path, required=True, help="folder of real clips (mp4, gif, avi, uint8 .npy/.npz)")
    p.add_argument("--generated", type=Path, required=True, help="folder of generated clips, named as the real ones")
    p.add_argument(
        "--fvd",
        choices=("styleganv", "tats", "off"),
        default="styleganv",
        help="I3D family: styleganv (i3d_torchscript.pt), tats (i3d_pretrained_400.pt) or off",
    )
    p.add_argument(
        "--fvd-weights",
        help="the I3D weights file (default: $FVD_I3D_TORCHSCRIPT / $FVD_I3D_STATE_DICT, "
        "then ~/.cache/video_diffusion/)",
    )
    p.add_argument(
        "--lpips",
        action="store_true",
        help="also LPIPS (AlexNet weights from $LPIPS_ALEXNET_WEIGHTS and "
        "$LPIPS_LINEAR_WEIGHTS or ~/.cache/video_diffusion/)",
    )
    p.add_argument(
        "--given",
        type=int,
        default=0,
        help="the first N frames of every clip were given, not generated: "
        "frame metrics skip them (FVD scores whole clips)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="clips scored at once")
    p.add_argument("--out", type=Path, help="write the JSON report here (default: print it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.batch_size < 1:
        parser().error(f"--batch-size: must be >= 1, got {args.batch_size}")
    try:
        report = score_folders(
            args.real,
            args.generated,
            fvd=args.fvd,
            fvd_weights=args.fvd_weights,
            lpips=args.lpips,
            given=args.given,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"vdiff-metrics: error: {err}", file=sys.stderr)
        return 2
    for skipped in report["skipped"]:
        print(f"vdiff-metrics: skipped {skipped['reason']}", file=sys.stderr)
    if args.out is not None:
        print(f"vdiff-metrics: report written to {write_json(args.out, report).resolve()}", file=sys.stderr)
    else:
        sys.stdout.write(to_json(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
