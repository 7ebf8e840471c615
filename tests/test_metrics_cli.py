"""vdiff-metrics on two folders of clips written by the test (mp4, gif, avi, .npy, .npz), with an I3D whose weights
the test writes; the video reader on each format; bad input: mismatched shapes, a missing weights file, an
unreadable file skipped and listed."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.test_evaluation_protocols import save_detector
from video_diffusion_lab.metrics import FrechetVideoDistance, frame_psnr
from video_diffusion_lab.metrics_cli import main
from video_diffusion_lab.video_io import UnreadableClip, read_clip, write_video

pytestmark = pytest.mark.usefixtures("single_thread")

FRAMES, SIZE = 10, 16


def random_clip(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)


def write_avi(path: Path, clip: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=4)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj444p"
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def as_video(clip: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """real/ and generated/ with four .npy pairs, an mp4 pair, an unpaired real .npz and an unreadable file."""
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    real, generated = tmp_path / "real", tmp_path / "generated"
    (real / "sub").mkdir(parents=True)
    (generated / "sub").mkdir(parents=True)
    for i in range(4):
        clip = random_clip(rng)
        np.save(real / "sub" / f"clip{i}.npy", clip)
        noisy = np.clip(clip.astype(int) + rng.integers(-20, 21, clip.shape), 0, 255).astype(np.uint8)
        np.save(generated / "sub" / f"clip{i}.npy", noisy)
    write_video(real / "moving.mp4", as_video(random_clip(rng)))
    write_video(generated / "moving.mp4", as_video(random_clip(rng)))
    np.savez(real / "extra.npz", video=random_clip(rng))
    (generated / "broken.mp4").write_bytes(b"not a video at all")
    return real, generated, save_detector(tmp_path / "i3d_torchscript.pt", seed=0)


def test_vdiff_metrics_scores_two_folders(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    real, generated, weights = folders
    out = tmp_path / "report.json"
    rc = main(["--real", str(real), "--generated", str(generated), "--fvd-weights", str(weights), "--given", "2",
               "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["num_pairs"] == 5 and report["clip_shape"] == [FRAMES, SIZE, SIZE, 3] and report["given_frames"] == 2
    assert report["unpaired"] == {"real_only": ["extra"], "generated_only": ["broken"]}
    assert [Path(s["file"]).name for s in report["skipped"]] == ["broken.mp4"]
    assert "cannot decode" in report["skipped"][0]["reason"]

    # PSNR of the pairs on frames 2.. (mean over clips of the per-clip frame mean), recomputed from the files.
    names = ["sub/clip0", "sub/clip1", "sub/clip2", "sub/clip3", "moving"]
    pairs = [(read_clip(next(real.glob(f"{n}.*"))), read_clip(next(generated.glob(f"{n}.*")))) for n in names]

    def unit(clip: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(clip[2:]).permute(0, 3, 1, 2) / 255.0

    psnr = [float(frame_psnr(unit(g), unit(r)).mean()) for r, g in pairs]
    assert report["model"]["psnr_mean"] == pytest.approx(np.mean(psnr), rel=1e-6)

    # FVD over all readable clips, paired or not: 6 real, 5 generated.
    fvd = FrechetVideoDistance(weights_path=str(weights))
    fvd.update(torch.stack([as_video(r) for r, _ in pairs] + [as_video(read_clip(real / "extra.npz"))]), real=True)
    fvd.update(torch.stack([as_video(g) for _, g in pairs]), real=False)
    assert report["model"]["fvd"] == pytest.approx(float(fvd.compute()), rel=1e-6)
    record = report["fvd_protocol"]
    assert record["num_real_clips"] == 6 and record["num_generated_clips"] == 5
    assert record["weights"]["path"] == str(weights.resolve()) and record["weights"]["is_published_file"] is False
    assert record["frames_per_clip"] == FRAMES and record["sampling"] is None
    assert report["fvd_rank_deficient"] is True

    # Scoring again against the same real folder reads its features from the cache.
    assert main(["--real", str(real), "--generated", str(generated), "--fvd-weights", str(weights),
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["fvd_protocol"]["real_statistics"]["clips_from_cache"] == 6


def test_vdiff_metrics_stops_on_mismatched_shapes_and_missing_weights(
    folders: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, generated, weights = folders
    np.save(generated / "small.npy", np.zeros((FRAMES, 8, 8, 3), np.uint8))
    args = ["--real", str(real), "--generated", str(generated), "--no-progress"]
    assert main([*args, "--fvd-weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "small.npy has shape (T, H, W, C) = (10, 8, 8, 3)" in err and "(10, 16, 16, 3)" in err
    (generated / "small.npy").unlink()

    missing = tmp_path / "nowhere" / "i3d_pretrained_400.pt"
    assert main([*args, "--fvd", "tats", "--fvd-weights", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "i3d_pretrained_400.pt' not found" in err and str(missing) in err and "FVD_I3D_STATE_DICT" in err

    # With FVD off nothing needs weights: frame metrics only.
    out = tmp_path / "frames.json"
    assert main([*args, "--fvd", "off", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "fvd" not in report["model"] and "fvd_protocol" not in report and report["num_pairs"] == 5


def test_read_clip_reads_every_format_and_names_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clip = random_clip(rng)
    np.save(tmp_path / "a.npy", clip)
    np.savez(tmp_path / "b.npz", clip)
    assert np.array_equal(read_clip(tmp_path / "a.npy"), clip) and np.array_equal(read_clip(tmp_path / "b.npz"), clip)
    smooth = np.repeat(np.linspace(0, 255, SIZE, dtype=np.uint8)[None, None, :, None], FRAMES, 0).repeat(SIZE, 1)
    smooth = np.repeat(smooth, 3, axis=3)
    write_video(tmp_path / "c.mp4", as_video(smooth))
    write_video(tmp_path / "d.gif", as_video(smooth))
    write_avi(tmp_path / "e.avi", smooth)
    # Lossy codecs, the same picture: H.264, MJPEG, and GIF's 256-colour palette (3-3-2 bits per RGB pixel).
    for name, tolerance in (("c.mp4", 4), ("d.gif", 20), ("e.avi", 4)):
        decoded = read_clip(tmp_path / name)
        assert decoded.shape == smooth.shape and decoded.dtype == np.uint8, name
        assert np.abs(decoded.astype(int) - smooth).mean() < tolerance, name

    np.save(tmp_path / "float.npy", clip.astype(np.float32))
    np.savez(tmp_path / "two.npz", a=clip, b=clip)
    (tmp_path / "empty.avi").write_bytes(b"")
    for name, reason in [("float.npy", "expected uint8 frames"), ("two.npz", "name the clip 'video'"),
                         ("empty.avi", "cannot decode"), ("x.txt", "unsupported file type")]:  # fmt: skip
        with pytest.raises(UnreadableClip, match=reason) as err:
            read_clip(tmp_path / name)
        assert name in str(err.value)
