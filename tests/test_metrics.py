"""Tests for the metrics package. No real weights exist here: every pretrained file is
replaced by random weights saved in the real file's format and found through the same
lookup (explicit path / environment variable) a user's file would take."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.stats import norm
from torch import Tensor, nn

from video_diffusion_lab.metrics import (
    CRPS,
    LPIPS,
    FrameQuality,
    FrechetVideoDistance,
    InceptionI3d,
    LearnedPerceptualVideoSimilarity,
    crps_from_samples,
    frechet_distance,
    gaussian_from_sums,
    load_i3d_state_dict,
    preprocess_tats,
    resolve_weights,
)
from video_diffusion_lab.metrics.i3d import same_padding
from video_diffusion_lab.metrics.lpips import AlexNetFeatures

# ----------------------------------------------------------------------------- helpers


def scipy_frechet(feats1: np.ndarray, feats2: np.ndarray, ddof: int = 1) -> float:
    """Reference FID/FVD the way StyleGAN-V writes it: scipy sqrtm of the product."""
    mu1, mu2 = feats1.mean(0), feats2.mean(0)
    s1 = np.cov(feats1, rowvar=False, ddof=ddof)
    s2 = np.cov(feats2, rowvar=False, ddof=ddof)
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.real(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)))


def stats(feats: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(0), np.cov(feats, rowvar=False, ddof=ddof)


def videos(b: int, t: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 0, shift: float = 0.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, t, c, h, w, generator=g) * 2 - 1 + shift).clamp(-1, 1)


# ----------------------------------------------------------------------------- Fréchet


@pytest.mark.parametrize("n,d", [(200, 16), (500, 32)])
def test_frechet_matches_scipy_full_rank(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.3
    ours = frechet_distance(*stats(a), *stats(b))
    assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-8)


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_frechet_rank_deficient(rank: int) -> None:
    # Fewer samples than dimensions (the usual small-eval-set case): singular covariances.
    rng = np.random.default_rng(rank)
    d = 24
    a = rng.normal(size=(rank + 1, d))
    b = rng.normal(size=(rank + 1, d)) + 0.1
    mu1, s1 = stats(a)
    mu2, s2 = stats(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    # Independent reference: the eigenvalues of S1 S2 are real and >= 0, and
    # tr((S1 S2)^{1/2}) is the sum of their square roots.
    ev = np.clip(np.real(np.linalg.eigvals(s1 @ s2)), 0, None)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum()
    assert math.isfinite(ours)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-8)
    assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-4, abs=1e-6)


def test_frechet_identical_sets_is_zero_even_when_singular() -> None:
    rng = np.random.default_rng(1)
    for n, d in [(300, 16), (5, 40)]:  # full rank and rank 4 in 40 dims
        f = rng.normal(size=(n, d)) * 10
        mu, s = stats(f)
        assert abs(frechet_distance(mu, s, mu, s)) < 1e-12 * np.trace(s)


def test_frechet_analytic_cases() -> None:
    rng = np.random.default_rng(2)
    m = rng.normal(size=(6, 6))
    s = m @ m.T
    delta = rng.normal(size=6)
    # Same covariance, shifted mean: d^2 = |delta|^2.
    assert frechet_distance(np.zeros(6), s, delta, s) == pytest.approx((delta**2).sum(), rel=1e-9)
    # Commuting covariances: d^2 = sum (sqrt(a_i) - sqrt(b_i))^2.
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 0.0])
    assert frechet_distance(np.zeros(3), a, np.zeros(3), b) == pytest.approx(1 + 0 + 9, rel=1e-12)
    # Accepts torch tensors too.
    t = torch.as_tensor(s, dtype=torch.float32)
    assert frechet_distance(torch.zeros(6), t, torch.zeros(6), t) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("ddof", [0, 1])
def test_gaussian_from_sums_matches_numpy_cov(ddof: int) -> None:
    rng = np.random.default_rng(3)
    f = rng.normal(size=(50, 7)) * 3 + 5
    x = torch.as_tensor(f)
    mu, sigma = gaussian_from_sums(len(f), x.sum(0), x.T @ x, ddof=ddof)
    assert mu.dtype == sigma.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(f, rowvar=False, ddof=ddof), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError):
        gaussian_from_sums(1, x[:1].sum(0), x[:1].T @ x[:1], ddof=1)


# ----------------------------------------------------------------------------- weights


def test_missing_weights_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FVD_I3D_TORCHSCRIPT", raising=False)
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as err:
        resolve_weights("I3D", None, "FVD_I3D_TORCHSCRIPT", "i3d_torchscript.pt", "Get it from StyleGAN-V.")
    msg = str(err.value)
    assert "i3d_torchscript.pt" in msg
    assert str((tmp_path / "cache" / "i3d_torchscript.pt").resolve()) in msg
    assert "FVD_I3D_TORCHSCRIPT" in msg and "Get it from StyleGAN-V." in msg

    # Env var wins over the cache; an explicit path wins over the env var; a directory works.
    f = tmp_path / "w" / "i3d_torchscript.pt"
    f.parent.mkdir()
    f.write_bytes(b"x")
    monkeypatch.setenv("FVD_I3D_TORCHSCRIPT", str(f))
    assert resolve_weights("I3D", None, "FVD_I3D_TORCHSCRIPT", "i3d_torchscript.pt", "") == f.resolve()
    assert resolve_weights("I3D", str(f.parent), "FVD_I3D_TORCHSCRIPT", "i3d_torchscript.pt", "") == f.resolve()
    with pytest.raises(FileNotFoundError, match="explicit path"):
        resolve_weights("I3D", str(tmp_path / "nope.pt"), "FVD_I3D_TORCHSCRIPT", "i3d_torchscript.pt", "")
    # Default cache directory.
    monkeypatch.delenv("FVD_I3D_TORCHSCRIPT")
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(f.parent))
    assert resolve_weights("I3D", None, "FVD_I3D_TORCHSCRIPT", "i3d_torchscript.pt", "") == f.resolve()


@pytest.mark.parametrize(
    "weights,env,filename,hint",
    [
        ("styleganv", "FVD_I3D_TORCHSCRIPT", "i3d_torchscript.pt", "StyleGAN-V"),
        ("tats", "FVD_I3D_STATE_DICT", "i3d_pretrained_400.pt", "TATS"),
    ],
)
def test_fvd_missing_file_raises_before_any_number(
    weights: str, env: str, filename: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(tmp_path))
    metric = FrechetVideoDistance(weights=weights)
    with pytest.raises(FileNotFoundError) as err:
        metric.update(videos(2), real=True)
    msg = str(err.value)
    assert filename in msg and env in msg and hint in msg and str(tmp_path) in msg
    assert float(metric.real_n) == 0


def test_lpips_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPIPS_ALEXNET_WEIGHTS", raising=False)
    monkeypatch.delenv("LPIPS_LINEAR_WEIGHTS", raising=False)
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth.*LPIPS_ALEXNET_WEIGHTS"):
        LPIPS()


# ----------------------------------------------------------------------------- FVD


class TinyStyleganDetector(nn.Module):
    """Stands in for i3d_torchscript.pt: same call signature; checks the StyleGAN-V convention."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(6, dim)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if not (rescale and resize and return_features):
            raise RuntimeError("expected rescale=True, resize=True, return_features=True")
        if x.dtype != torch.uint8 or x.shape[1] != 3:
            raise RuntimeError("expected uint8 (B, 3, T, H, W)")
        v = x.float() / 127.5 - 1.0
        pooled = torch.cat([v.mean(dim=(2, 3, 4)), v.std(dim=(2, 3, 4))], dim=1)
        return 3.0 * torch.tanh(self.proj(pooled))


def scripted_detector(path: Path, dim: int) -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        # torch.jit.script is deprecated in recent PyTorch, but TorchScript files such as
        # i3d_torchscript.pt are exactly what is being stood in for here.
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.script(TinyStyleganDetector(dim).eval())
        module.save(str(path))
        return torch.jit.load(str(path))


def test_fvd_styleganv_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dim = 8
    ref_detector = scripted_detector(tmp_path / "i3d_torchscript.pt", dim)
    monkeypatch.setenv("FVD_I3D_TORCHSCRIPT", str(tmp_path / "i3d_torchscript.pt"))
    real, fake = videos(12, seed=1), videos(10, seed=2, shift=0.3)

    metric = FrechetVideoDistance(weights="styleganv", num_features=dim, feature_batch_size=5)
    metric.update(real[:7], real=True)
    metric.update(real[7:], real=True)
    metric.update(fake, real=False)
    value = float(metric.compute())

    def feats(v: Tensor) -> np.ndarray:
        # StyleGAN-V: uint8 (B, C, T, H, W) = (x * 127.5 + 128).clamp(0, 255).
        x = (v * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 1, 3, 4)
        with torch.no_grad():
            return ref_detector(x, rescale=True, resize=True, return_features=True).double().numpy()

    assert metric.weights_name == "styleganv"
    assert value == pytest.approx(scipy_frechet(feats(real), feats(fake), ddof=0), rel=1e-6)
    assert value > 0
    # The network never enters the metric's state_dict (checkpoints) or parameters.
    assert not any("proj" in k for k in metric.state_dict())
    assert list(metric.parameters()) == []
    # Copies drop the loaded network and reload lazily; states survive.
    clone = copy.deepcopy(metric)
    assert clone._extractor is None and float(clone.compute()) == pytest.approx(value)


def test_fvd_identical_and_grayscale(tmp_path: Path) -> None:
    scripted_detector(tmp_path / "i3d_torchscript.pt", 4)
    metric = FrechetVideoDistance(weights_path=str(tmp_path), num_features=4)
    clip = videos(6, c=1, seed=3)  # grayscale is repeated to RGB before the detector
    metric.update(clip, real=True)
    metric.update(clip, real=False)
    assert abs(float(metric.compute())) < 1e-8
    metric.reset()
    assert float(metric.real_n) == 0 and metric._extractor is not None


def tats_reference_keys() -> set[str]:
    """Parameter/buffer names of the pytorch-i3d port (videogpt/fvd/pytorch_i3d.py)."""
    units = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
    mixed = ["Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c"]
    units += [f"{m}.{b}" for m in mixed for b in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")]
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {f"{u}.conv3d.weight" for u in units} | {f"{u}.bn.{p}" for u in units for p in bn}
    return keys | {"logits.conv3d.weight", "logits.conv3d.bias"}


def test_i3d_structure() -> None:
    model = InceptionI3d().eval()
    sd = model.state_dict()
    assert set(sd) == tats_reference_keys()
    assert len(sd) == 344
    shapes = {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_4b.b0.conv3d.weight": (192, 480, 1, 1, 1),
        "Mixed_5b.b3b.conv3d.weight": (128, 832, 1, 1, 1),
        "Mixed_5c.b2b.bn.running_var": (128,),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1),
        "logits.conv3d.bias": (400,),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    # TF "SAME" padding: extra pixel at the back.
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(16, 1, 1) == (0, 0)
    # (The forward pass is exercised by test_fvd_tats_end_to_end.)


def test_fvd_tats_weights_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    # Old pytorch-i3d checkpoints predate BatchNorm's num_batches_tracked buffers.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    monkeypatch.setenv("FVD_I3D_STATE_DICT", str(tmp_path / "i3d_pretrained_400.pt"))

    # One 9-frame clip: the shortest the 2x7x7 head accepts (time is downsampled 8x). Each
    # I3D pass at 224x224 costs ~0.5 s on CPU, so this test runs exactly two.
    real = videos(1, t=9, seed=4)
    metric = FrechetVideoDistance(weights="tats")
    metric.update(real, real=True)
    with torch.no_grad():
        f_real = model(preprocess_tats(real)).double()
    assert f_real.shape == (1, 400) and torch.isfinite(f_real).all()
    # The loaded file reproduces the saved network and the streamed sums are its features.
    torch.testing.assert_close(metric.real_sum, f_real[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(metric.real_outer, torch.outer(f_real[0], f_real[0]), rtol=1e-5, atol=1e-5)
    assert metric.weights_name == "tats" and metric.ddof == 1
    assert not any(k.startswith("Mixed") for k in metric.state_dict())
    with pytest.raises(ValueError, match="at least 2 real"):
        metric.compute()

    # A wrong file is rejected with a clear error rather than silently half-loaded.
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="missing keys"):
        load_i3d_state_dict(InceptionI3d(), str(tmp_path / "bad.pt"))


def test_preprocess_tats_matches_reference_recipe() -> None:
    # tats/fvd/fvd.py: uint8 frames -> float -> bilinear (align_corners=False) resize to
    # 224x224 -> 2x/255 - 1 -> (B, C, T, H, W).
    v = videos(2, t=3, c=3, h=10, w=12, seed=6)
    u8 = ((v + 1) * 127.5).round().clamp(0, 255)
    frames = torch.nn.functional.interpolate(u8.flatten(0, 1), size=(224, 224), mode="bilinear", align_corners=False)
    expected = (2 * frames / 255 - 1).view(2, 3, 3, 224, 224).transpose(1, 2)
    torch.testing.assert_close(preprocess_tats(v), expected, rtol=0, atol=1e-5)
    gray = preprocess_tats(v[:, :, :1])
    assert gray.shape == (2, 3, 3, 224, 224) and torch.equal(gray[:, 0], gray[:, 2])


def test_fvd_custom_extractor_and_validation() -> None:
    extractor = nn.Sequential(nn.Flatten(1), nn.Linear(4 * 3 * 8 * 8, 5))
    metric = FrechetVideoDistance(feature_extractor=extractor, num_features=5)
    assert metric.weights_name == "custom"
    metric.update(videos(3), real=True)
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute()
    with pytest.raises(ValueError):
        FrechetVideoDistance(weights="tf-hub")
    with pytest.raises(ValueError, match="expected videos"):
        metric.update(torch.zeros(3, 4, 8, 8), real=True)


# ----------------------------------------------------------------------------- CRPS


def crps_gaussian(mu: Tensor, sigma: float, y: Tensor) -> Tensor:
    z = ((y - mu) / sigma).double().numpy()
    value = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    return torch.as_tensor(value)


def test_crps_hand_cases() -> None:
    x = torch.tensor([1.0, 2.0, 4.0]).view(3, 1)
    y = torch.tensor([3.0])
    # E|X-y| = 4/3; sum_{i!=j}|xi-xj| = 12 -> fair spread 12/6 = 2, ensemble 12/9.
    assert float(crps_from_samples(x, y, "fair")) == pytest.approx(4 / 3 - 1)
    assert float(crps_from_samples(x, y, "ensemble")) == pytest.approx(2 / 3)  # = integral (F_emp - H)^2
    two = torch.tensor([0.0, 1.0]).view(2, 1)
    assert float(crps_from_samples(two, torch.tensor([0.0]), "fair")) == pytest.approx(0.0)
    assert float(crps_from_samples(two, torch.tensor([0.0]), "ensemble")) == pytest.approx(0.25)
    # Point mass (all samples equal) reduces to the absolute error.
    same = torch.full((4, 1), 0.25)
    assert float(crps_from_samples(same, torch.tensor([1.0]))) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        crps_from_samples(x[:1], y, "fair")


def test_crps_sorted_formula_matches_pairwise() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 5, 3, generator=g), torch.randn(5, 3, generator=g)
    pair = (x[:, None] - x[None, :]).abs().sum(dim=(0, 1)) / (7 * 6)
    expected = (x - y).abs().mean(0) - 0.5 * pair
    torch.testing.assert_close(crps_from_samples(x, y).float(), expected, rtol=1e-5, atol=1e-6)


def test_crps_gaussian_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    sigma, n = 0.2, 4000
    target = torch.rand(1, 2, 1, 8, 8, generator=g) * 0.6 + 0.2  # 128 pixels, values in [0, 1]
    mu = torch.full_like(target, 0.5)
    samples = mu + sigma * torch.randn(n, *target.shape, generator=g, dtype=torch.float64)
    metric = CRPS(value_range=(0.0, 1.0))
    metric.update(samples, target)
    exact = crps_gaussian(mu, sigma, target).mean()
    assert float(metric.compute()) == pytest.approx(float(exact), rel=0.01)


def test_crps_metric_accumulation_scaling_and_mask() -> None:
    g = torch.Generator().manual_seed(2)
    samples = torch.rand(5, 4, 3, 1, 6, 6, generator=g) * 2 - 1
    target = torch.rand(4, 3, 1, 6, 6, generator=g) * 2 - 1
    whole = CRPS()
    whole.update(samples, target)
    # Split updates (as across batches / ranks) give exactly the same mean.
    parts = CRPS()
    parts.update(samples[:, :1], target[:1])
    parts.update(samples[:, 1:], target[1:])
    assert float(parts.compute()) == pytest.approx(float(whole.compute()), rel=1e-12)
    # [-1, 1] -> [0, 1]: CRPS is scale-equivariant, so the score halves.
    raw = CRPS(value_range=(0.0, 1.0))
    raw.update(samples, target)
    assert float(whole.compute()) == pytest.approx(0.5 * float(raw.compute()), rel=1e-12)
    # Latent mask: only predicted frames count.
    latent = torch.tensor([[False, True, True]] * 4)
    masked = CRPS()
    masked.update(samples, target, latent)
    only = CRPS()
    only.update(samples[:, :, 1:], target[:, 1:])
    assert float(masked.compute()) == pytest.approx(float(only.compute()), rel=1e-12)
    assert float(masked.count) == 4 * 2 * 36


# ----------------------------------------------------------------------------- PSNR / SSIM


def test_frame_quality_hand_checked() -> None:
    # One test video, 3 frames; frame 0 is context, frames 1-2 predicted.
    target = torch.full((1, 3, 1, 16, 16), -1.0)  # 0 in [0, 1]
    latent = torch.tensor([[False, True, True]])

    def sample(err1: float, err2: float) -> Tensor:
        s = torch.full((1, 3, 1, 16, 16), 1.0)  # context frame maximally wrong: must be ignored
        s[0, 1], s[0, 2] = -1 + 2 * err1, -1 + 2 * err2  # constant error in [0, 1] units
        return s

    samples = torch.stack([sample(0.1, 0.01), sample(0.2, 0.2)])  # (N=2, B=1, T, C, H, W)
    metric = FrameQuality()
    metric.update(samples, target, latent)
    out = metric.compute()
    # Sample 0: frames at 20 dB and 40 dB -> 30 (per-frame average, not PSNR of mean MSE).
    # Sample 1: 10*log10(1/0.04) on both frames.
    p1 = 10 * math.log10(1 / 0.04)
    assert float(out["psnr_best"]) == pytest.approx(30.0, rel=1e-5)
    assert float(out["psnr_mean"]) == pytest.approx((30.0 + p1) / 2, rel=1e-5)
    assert set(out) == {"psnr_mean", "psnr_best", "ssim_mean", "ssim_best"}


def test_frame_quality_best_at_least_mean_and_identity() -> None:
    g = torch.Generator().manual_seed(3)
    target = torch.rand(3, 4, 3, 16, 16, generator=g) * 2 - 1
    samples = (target + 0.3 * torch.randn(4, *target.shape, generator=g)).clamp(-1, 1)
    latent = torch.tensor([[False, True, True, True], [False, False, True, True], [False, False, False, False]])
    metric = FrameQuality()
    metric.update(samples, target, latent)
    out = metric.compute()
    assert float(metric.count) == 2  # the video without predicted frames is skipped
    assert out["psnr_best"] >= out["psnr_mean"] and out["ssim_best"] >= out["ssim_mean"]

    # Split by video -> same result (sum/count states are exact under DDP).
    split = FrameQuality()
    split.update(samples[:, :1], target[:1], latent[:1])
    split.update(samples[:, 1:], target[1:], latent[1:])
    for k, v in split.compute().items():
        assert float(v) == pytest.approx(float(out[k]), rel=1e-12)

    perfect = FrameQuality()
    noisy = samples.clone()
    noisy[0] = target  # sample 0 is exact
    perfect.update(noisy, target, latent)
    res = perfect.compute()
    assert float(res["ssim_best"]) == pytest.approx(1.0, abs=1e-6)
    assert math.isinf(float(res["psnr_best"]))


# ----------------------------------------------------------------------------- LPIPS


def save_random_lpips_weights(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    feats = AlexNetFeatures()
    alex = {k: v.clone() for k, v in feats.state_dict().items()}
    alex["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision's file also holds the classifier
    alex_path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alex, alex_path)
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}
    lin_path = tmp_path / "alex.pth"
    torch.save(lin, lin_path)
    return alex_path, lin_path


def test_alexnet_keys_match_torchvision() -> None:
    sd = AlexNetFeatures().state_dict()
    expected = {
        "features.0.weight": (64, 3, 11, 11),
        "features.3.weight": (192, 64, 5, 5),
        "features.6.weight": (384, 192, 3, 3),
        "features.8.weight": (256, 384, 3, 3),
        "features.10.weight": (256, 256, 3, 3),
    }
    expected.update({k.replace("weight", "bias"): (s[0],) for k, s in expected.items()})
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


def test_lpips_identity_and_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alex_path, lin_path = save_random_lpips_weights(tmp_path)
    monkeypatch.setenv("LPIPS_ALEXNET_WEIGHTS", str(alex_path))
    monkeypatch.setenv("LPIPS_LINEAR_WEIGHTS", str(lin_path))
    net = LPIPS()
    lin = torch.load(lin_path, weights_only=True)
    torch.testing.assert_close(net.lin2.model[1].weight, lin["lin2.model.1.weight"])
    assert not any(p.requires_grad for p in net.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x, x), torch.zeros(2))
        d = net(x, y)
    assert d.shape == (2,) and (d > 0).all()

    metric = LearnedPerceptualVideoSimilarity(frame_batch_size=3)
    clip = torch.rand(2, 3, 1, 64, 64, generator=g) * 2 - 1  # grayscale
    latent = torch.tensor([[False, True, True], [False, False, True]])
    metric.update(clip.unsqueeze(0).repeat(2, 1, 1, 1, 1, 1), clip, latent)
    assert float(metric.compute()) == 0.0 and float(metric.count) == 2 * 3
    metric.update(-clip, clip, latent)
    assert float(metric.compute()) > 0
    assert not any("lin" in k or "features" in k for k in metric.state_dict())
