"""FVD's protocol record, the cached real-clip features, spread over runs and the rank-deficiency flag.

The I3D is a random-weight TorchScript file written by the test in the format of StyleGAN-V's ``i3d_torchscript.pt``
and found the way a user's file is (tests/test_evaluation_protocols.py); the feature cache goes to a temporary
``$VIDEO_DIFFUSION_CACHE``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures_real_data import write_bair_tfrecords
from tests.test_evaluation_protocols import TINY_RAMVID, save_detector
from tests.tiny_run import REPO
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.metrics import I3D_STATE_DICT, I3D_TORCHSCRIPT, FrechetVideoDistance, describe_weights_file
from video_diffusion_lab.metrics.fvd_cache import RealFeatureCache
from video_diffusion_lab.metrics.protocol import EvaluationProtocol, VideoEvaluation, fvd_rank_deficiency

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fvd_real_features"


@pytest.fixture
def detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = save_detector(tmp_path / "weights" / "i3d_torchscript.pt", seed=0)
    monkeypatch.setenv("FVD_I3D_TORCHSCRIPT", str(path))
    return path


def clips(n: int, frames: int = 9, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, frames, 3, size, size, generator=g) * 2 - 1


def prediction_mask(n: int, frames: int, given: int) -> FrameMask:
    observed = torch.zeros(n, frames, dtype=torch.bool)
    observed[:, :given] = True
    return FrameMask.from_observed(observed)


# ------------------------------------------------------------------------------------------------ through vdiff test


def vdiff_test(data_root: Path, run_dir: Path, *extra: str) -> dict:
    vdiff.run([
        "test", "--untrained",
        "--config", str(REPO / "experiments/ramvid_bair.yaml"),
        "--config", str(REPO / "experiments/protocols/bair_1to15.yaml"),
        "--data.init_args.root", str(data_root),
        "--data.init_args.val_size", "1",
        "--trainer.default_root_dir", str(run_dir),
        *TINY_RAMVID,
        *extra,
    ])  # fmt: skip
    return json.loads((run_dir / "metrics_test.json").read_text())


def test_vdiff_test_writes_the_fvd_record_and_a_second_test_reuses_the_cached_features(
    tmp_path: Path, detector: Path, cache_dir: Path
) -> None:
    data_root = tmp_path / "bair"
    write_bair_tfrecords(data_root, {"train": 4, "test": 2})
    with pytest.warns(UserWarning, match="FVD from 2 real and 4 generated clips"):
        first = vdiff_test(data_root, tmp_path / "run1")

    record = first["fvd_protocol"]
    assert record["extractor"] == "styleganv"
    weights = record["weights"]
    assert weights["file"] == "i3d_torchscript.pt"
    assert weights["sha256"] == hashlib.sha256(detector.read_bytes()).hexdigest()
    # A stand-in file: named as not the published one.
    assert weights["is_published_file"] is False and weights["published_sha256"] == I3D_TORCHSCRIPT.sha256
    assert "NOT the published i3d_torchscript.pt" in weights["note"]
    assert record["preprocessing"]["resize"].startswith("to 224x224") and record["feature_dim"] == 400
    # 2 test clips, N = 2 samples each, 16 frames of 16x16, the first one given and inside the scored clips.
    assert record["num_real_clips"] == first["num_videos"] == 2 and record["num_generated_clips"] == 4
    assert record["frames_per_clip"] == 16 and record["clip_size"] == [16, 16] and record["channels"] == 3
    assert record["given_frames"] == 1 and record["given_frames_in_scored_clips"] is True
    assert record["runs"] == 1 and first["protocol"]["runs"] == 1
    assert record["sampling"]["sampler"] == first["sampler"] == "ddim"  # the sampling settings travel with the FVD
    assert first["fvd_rank_deficient"] is True and record["rank_deficient"] is True
    cache_file = Path(record["real_statistics"]["cache_file"])
    assert cache_file.parent == cache_dir and cache_file.is_file()
    assert record["real_statistics"] == {"cache_file": str(cache_file), "clips_from_cache": 0, "clips_computed": 2}
    stored = cache_file.read_bytes()

    # Another run folder, same clips and weights file: the real side comes from the cache, unchanged.
    second = vdiff_test(data_root, tmp_path / "run2")
    assert second["fvd_protocol"]["real_statistics"] == {
        "cache_file": str(cache_file), "clips_from_cache": 2, "clips_computed": 0,
    }  # fmt: skip
    assert second["model"]["fvd"] == first["model"]["fvd"]
    assert cache_file.read_bytes() == stored

    # Another weights file (same name, other bytes): another cache file, the real side computed again.
    save_detector(detector, seed=1)
    third = vdiff_test(data_root, tmp_path / "run3")
    assert third["fvd_protocol"]["weights"]["sha256"] != weights["sha256"]
    assert Path(third["fvd_protocol"]["real_statistics"]["cache_file"]) != cache_file
    assert third["fvd_protocol"]["real_statistics"]["clips_computed"] == 2
    assert len(list(cache_dir.iterdir())) == 2


def test_vdiff_test_with_three_runs_writes_mean_std_and_each_run(
    tmp_path: Path, detector: Path, cache_dir: Path
) -> None:
    data_root = tmp_path / "bair"
    write_bair_tfrecords(data_root, {"train": 4, "test": 2})
    report = vdiff_test(data_root, tmp_path / "run", "--model.init_args.evaluation.runs", "3")
    assert report["protocol"]["runs"] == 3 and len(report["model_runs"]) == 3
    for key in ("psnr_mean", "psnr_best", "ssim_mean", "crps", "fvd"):
        values = np.array([numbers[key] for numbers in report["model_runs"]])
        assert report["model"][key] == pytest.approx(values.mean(), rel=1e-12)
        assert report["model_std"][key] == pytest.approx(values.std(ddof=1), rel=1e-12)
    # Three seeds, three different sample sets.
    assert len({numbers["psnr_mean"] for numbers in report["model_runs"]}) == 3
    record = report["fvd_protocol"]
    assert record["runs"] == 3 and record["num_real_clips"] == 2 and record["num_generated_clips"] == 4


# ------------------------------------------------------------------------------------------------------- the cache


def test_cached_features_are_keyed_by_the_pixels_and_give_the_recomputed_value(detector: Path, tmp_path: Path) -> None:
    real, fake = clips(6, seed=1), clips(5, seed=2)

    def fvd(real_clips: torch.Tensor, cache: Path | None) -> FrechetVideoDistance:
        metric = FrechetVideoDistance(cache_dir=cache)
        metric.update(real_clips[:4], real=True)
        metric.update(real_clips[4:], real=True)
        metric.update(fake, real=False)
        metric.compute()
        return metric

    uncached = float(fvd(real, None).compute())
    first = fvd(real, tmp_path / "c")
    assert first.counts.real_from_cache == 0 and len(RealFeatureCache(first.real_cache.identity, tmp_path / "c")) == 6
    second = fvd(real, tmp_path / "c")
    assert second.counts.real_from_cache == 6
    assert float(first.compute()) == float(second.compute()) == uncached  # float32 features round-trip exactly

    # One changed pixel: that clip alone is computed again.
    edited = real.clone()
    edited[3, 0, 0, 0, 0] = -edited[3, 0, 0, 0, 0]
    third = fvd(edited, tmp_path / "c")
    assert third.counts.real_from_cache == 5
    # Equal up to the extractor's float32 rounding, which depends on how many clips share its batch.
    assert float(third.compute()) == pytest.approx(float(fvd(edited, None).compute()), rel=1e-6)

    # A cache file that does not load is reported and rebuilt, never trusted.
    first.real_cache.path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = fvd(real, tmp_path / "c")
    assert rebuilt.counts.real_from_cache == 0 and float(rebuilt.compute()) == uncached


def test_published_hash_is_recognised_and_a_family_without_one_says_so(tmp_path: Path) -> None:
    path = save_detector(tmp_path / "i3d_torchscript.pt", seed=0)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    as_published = describe_weights_file(dataclasses.replace(I3D_TORCHSCRIPT, sha256=digest), path)
    assert as_published["is_published_file"] is True and as_published["note"].startswith("the published")
    other = describe_weights_file(I3D_TORCHSCRIPT, path)
    assert other["is_published_file"] is False and other["sha256"] == digest
    unknown = describe_weights_file(I3D_STATE_DICT, path)
    assert unknown["is_published_file"] is None and "no published sha256" in unknown["note"]


# ------------------------------------------------------------------------------------------------------------- runs


def test_runs_report_mean_std_and_the_values_of_each_run(detector: Path, tmp_path: Path) -> None:
    video, mask = clips(4, frames=10, seed=3), prediction_mask(4, 10, given=2)
    noise = [torch.randn(2, *video.shape, generator=torch.Generator().manual_seed(r)) for r in range(3)]
    sample_sets = [(video[None] + 0.2 * (r + 1) * noise[r]).clamp(-1, 1) for r in range(3)]
    protocol = EvaluationProtocol(num_samples=2, runs=3, fvd="styleganv", fvd_cache=False)
    settings = {"sampler": "ddim", "sampling_steps": 3, "eval_seed": 7}
    evaluation = VideoEvaluation(protocol, 10, settings=settings)
    for run, samples in enumerate(sample_sets):
        evaluation.update(samples, video, mask, run=run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 4 clips: rank-deficient, tested below
        results = evaluation.compute()

    # Each run's numbers are those of a one-run evaluation of its sample set.
    for run, samples in enumerate(sample_sets):
        single = VideoEvaluation(dataclasses.replace(protocol, runs=1), 10)
        single.update(samples, video, mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            expected = single.compute()["model"]
        assert results["model_runs"][run] == pytest.approx(expected, rel=1e-12)
    for key in ("psnr_mean", "ssim_best", "crps", "fvd"):
        values = np.array([numbers[key] for numbers in results["model_runs"]])
        assert results["model"][key] == pytest.approx(values.mean(), rel=1e-12)
        assert results["model_std"][key] == pytest.approx(values.std(ddof=1), rel=1e-12) and values.std() > 0
    record = results["fvd_protocol"]
    # The test clips are counted once, the generated ones per run.
    assert record["num_real_clips"] == 4 and record["num_generated_clips"] == 8
    assert record["runs"] == 3 and record["run_seeds"] == [7, 8, 9]
    assert record["sampling"]["sampler"] == "ddim" and record["sampling"]["sampling_steps"] == 3
    with pytest.raises(ValueError, match="run must be in"):
        evaluation.update(sample_sets[0], video, mask, run=3)


# ------------------------------------------------------------------------------------------------ rank deficiency


def test_rank_deficiency_follows_the_clip_counts(detector: Path) -> None:
    assert fvd_rank_deficiency(401, 401, 400) is None
    assert "400 real and 401 generated" in fvd_rank_deficiency(400, 401, 400)
    assert fvd_rank_deficiency(401, 50, 400) is not None

    protocol = EvaluationProtocol(fvd="styleganv", fvd_cache=False)
    video = clips(401, seed=4)
    evaluation = VideoEvaluation(protocol, 9)
    evaluation.update((video * 0.9)[None], video, prediction_mask(401, 9, given=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no rank warning; the stand-in file's warning came at load
        results = evaluation.compute()
    assert results["fvd_rank_deficient"] is False
    record = results["fvd_protocol"]
    assert record["given_frames"] == 0 and record["given_frames_in_scored_clips"] is False

    # RVD's protocol: 50 clips, one sample each.
    small = VideoEvaluation(protocol, 9)
    small.update((video[:50] * 0.9)[None], video[:50], prediction_mask(50, 9, given=4))
    with pytest.warns(UserWarning, match="FVD from 50 real and 50 generated clips.*400 features"):
        assert small.compute()["fvd_rank_deficient"] is True
