"""RVD: ConvGRU steps, the predictor/context RNNs, the residual, the training loss and the rollout sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import video_diffusion_lab.diffusion.video_sampler as video_sampler_module
from video_diffusion_lab.diffusion import FrameMask, task_mask
from video_diffusion_lab.diffusion.denoiser import Denoiser
from video_diffusion_lab.groups import ClipShape, DiffusionConfig, EMAConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules.rvd import RVD, RVDNetwork, RVDNetworkConfig, prefix_length
from video_diffusion_lab.networks.rvd import ConvGRUCell

REPO = Path(__file__).resolve().parents[1]
TINY_NETWORK = RVDNetworkConfig(model_channels=8, channel_mult=(1, 2), predictor_mult=(1, 2))


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_rvd(sampler: str = "ddim", steps: int | None = 3, task: str = "prediction", **overrides) -> RVD:
    torch.manual_seed(0)
    return RVD(
        clip=ClipShape(num_frames=5, image_size=8),
        network=TINY_NETWORK,
        diffusion=DiffusionConfig(schedule="cosine", steps=100),
        sampling=SamplingConfig(sampler=sampler, steps=steps),
        task=TaskConfig(task=task, num_given=2),
        ema=EMAConfig(decay=0.5),
        **overrides,
    )


def clip(batch: int = 2, frames: int = 5, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def batch_of(video: torch.Tensor) -> dict[str, torch.Tensor]:
    b, t = video.shape[:2]
    return {"video": video, "frame_indices": torch.arange(t).expand(b, t).clone(), "index": torch.arange(b)}


# ------------------------------------------------------------------------------------------------------ ConvGRU
def test_convgru_step_shapes_zero_state_and_carried_state() -> None:
    torch.manual_seed(0)
    cell = ConvGRUCell(3, 5)
    x0, x1 = torch.randn(2, 2, 3, 6, 6).unbind(0)
    h0 = cell(x0)
    assert h0.shape == (2, 5, 6, 6)
    torch.testing.assert_close(h0, cell(x0, torch.zeros(2, 5, 6, 6)), rtol=0, atol=0)  # None = reset = zeros
    h1 = cell(x1, h0)
    assert not torch.allclose(h1, cell(x1)), "the state must carry the first frame into the second step"
    # GRU update: a convex combination of the old state and a tanh candidate stays in [-1, 1].
    assert h1.abs().max() <= 1


def test_rnns_are_causal_and_reset_for_every_video() -> None:
    torch.manual_seed(0)
    network = RVDNetwork(TINY_NETWORK, image_size=8, channels=3)
    video = clip(frames=5)
    mu, context = network.teacher_forcing(video)
    assert mu.shape == video.shape and mu.abs().max() <= 1
    assert [tuple(c.shape) for c in context] == [(2, 5, 8, 8, 8), (2, 5, 16, 4, 4)]
    assert torch.count_nonzero(mu[:, 0]) == 0 and all(torch.count_nonzero(c[:, 0]) == 0 for c in context)

    # Slot t depends on frames < t only: changing frame 2 leaves slots 0..2 alone and changes slot 3.
    changed = video.clone()
    changed[:, 2] = -changed[:, 2]
    mu2, context2 = network.teacher_forcing(changed)
    torch.testing.assert_close(mu2[:, :3], mu[:, :3], rtol=0, atol=0)
    torch.testing.assert_close(context2[0][:, :3], context[0][:, :3], rtol=0, atol=0)
    assert not torch.allclose(mu2[:, 3], mu[:, 3]) and not torch.allclose(context2[1][:, 3], context[1][:, 3])

    # The state is carried across steps: mu_2 depends on frame 0 ...
    earlier = video.clone()
    earlier[:, 0] = -earlier[:, 0]
    assert not torch.allclose(network.teacher_forcing(earlier)[0][:, 2], mu[:, 2])
    # ... and reset per video: a clip after another one gives what it gives alone; observe(state=None) restarts.
    network.teacher_forcing(clip(seed=7))
    torch.testing.assert_close(network.teacher_forcing(video)[0], mu, rtol=0, atol=0)
    mu_a, _, state = network.observe(video[:, 0])
    network.observe(video[:, 1], state)
    torch.testing.assert_close(network.observe(video[:, 0])[0], mu_a, rtol=0, atol=0)
    torch.testing.assert_close(mu_a, mu[:, 1], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------- residual and loss
def test_mu_and_residual_add_back_to_the_frame() -> None:
    for scale in (1.0, 2.0):
        model = tiny_rvd(residual_scale=scale)
        video = clip()
        mu, _ = model.network.teacher_forcing(video)
        back = model.from_residual(model.to_residual(video, mu), mu)
        torch.testing.assert_close(back, video, rtol=0, atol=1e-6)


def test_rollout_returns_mu_plus_the_sampled_residual(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_rvd(residual_scale=2.0)
    video = clip(frames=5)
    residual = torch.full((2, 1, 3, 8, 8), 0.125)

    def fixed_residual(denoiser, given, mask, **kwargs):
        assert given.shape == (2, 1, 3, 8, 8) and mask.latent.all()
        assert [tuple(c.shape) for c in kwargs["extra_args"]["context"]] == [(2, 1, 8, 8, 8), (2, 1, 16, 4, 4)]
        return residual

    monkeypatch.setattr(video_sampler_module, "sample", fixed_residual)
    out = model.rollout(video, num_given=2)
    torch.testing.assert_close(out[:, :2], video[:, :2], rtol=0, atol=0)
    # Replay the RNNs on the rollout's own frames: each generated frame is clamp(mu_t + sigma * y_t).
    mu, _ = model.ema.module.teacher_forcing(out)
    torch.testing.assert_close(out[:, 2:], (mu[:, 2:] + 2.0 * 0.125).clamp(-1, 1), rtol=0, atol=1e-6)
    mu_only = model.rollout(video, num_given=2, mu_only=True)
    mu_replay, _ = model.ema.module.teacher_forcing(mu_only)
    torch.testing.assert_close(mu_only[:, 2:], mu_replay[:, 2:], rtol=0, atol=0)


def test_loss_ignores_warm_up_frames_with_one_time_per_video(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_rvd()
    batch = batch_of(clip(frames=5))
    mu, context = model.network.teacher_forcing(batch["video"])
    times, masks = [], []
    forward = type(model.network).forward

    def spy(self, z, time, mask=None, **cond):
        times.append(time)
        masks.append(mask)
        return forward(self, z, time, mask, **cond)

    monkeypatch.setattr(type(model.network), "forward", spy)

    def loss_with(mu_override: torch.Tensor) -> torch.Tensor:
        monkeypatch.setattr(model.network, "teacher_forcing", lambda video: (mu_override, context))
        torch.manual_seed(3)
        return model.training_loss(batch)

    base = loss_with(mu)
    assert times[0].shape == (2,), "one diffusion time per video, shared by its frames"
    assert masks[0].observed[:, :2].all() and not masks[0].observed[:, 2:].any() and masks[0].latent[:, 2:].all()
    warm = mu.clone()
    warm[:, :2] += 0.5  # changes the residual of warm-up frames only
    torch.testing.assert_close(loss_with(warm), base, rtol=0, atol=0)
    latent = mu.clone()
    latent[:, 2] += 0.5
    assert not torch.allclose(loss_with(latent), base)


def test_training_is_end_to_end_with_the_papers_diffusion() -> None:
    model = tiny_rvd()
    assert model.schedule.num_steps == 100 and model.diffusion.prediction == "eps" and model.loss_type == "l1"
    paper = RVD(clip=ClipShape(num_frames=4, image_size=8), network=TINY_NETWORK, task=TaskConfig(num_given=1))
    assert paper.schedule.num_steps == 1600 and paper.diffusion.schedule == "cosine" and paper.loss_type == "l1"
    loss = model.training_loss(batch_of(clip()))
    loss.backward()
    for part in ("predictor", "context_encoder", "denoiser"):
        grads = [p.grad for p in getattr(model.network, part).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"the diffusion loss does not train the {part}"


# ----------------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("sampler, steps", [("ddim", 50), ("ddpm", None)])
def test_sampling_with_ddim_50_and_the_full_ddpm_chain(
    sampler: str, steps: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_rvd(sampler=sampler, steps=steps)
    video = clip(frames=4)
    mask = task_mask("prediction", 2, 4, 2)
    calls = []
    original = Denoiser.__call__

    def count(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Denoiser, "__call__", count)
    out = model.sample(video, mask, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 * (steps or 100), "each of the 2 generated frames runs the whole chain"
    torch.testing.assert_close(out[:, :2], video[:, :2], rtol=0, atol=0)
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    other = model.sample(video, mask, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(other[:, 2:], out[:, 2:]), "samples must depend on the noise"


def test_task_and_mask_errors() -> None:
    for task in ("infilling", "upsampling", "unconditional"):
        with pytest.raises(ValueError, match="task"):
            tiny_rvd(task=task)
    model = tiny_rvd()
    video = clip(frames=5)
    for task, given in (("infilling", 2), ("upsampling", 2), ("unconditional", 1)):
        with pytest.raises(ValueError, match="task"):
            model.sample(video, task_mask(task, 2, 5, given))
    ragged = FrameMask.from_observed(torch.arange(5).expand(2, 5) < torch.tensor([[1], [2]]))  # 1 and 2 given
    with pytest.raises(ValueError, match="task"):
        model.sample(video, ragged)
    assert prefix_length(task_mask("prediction", 2, 5, 3)) == 3


def test_more_given_frames_than_a_training_clip_need_a_shorter_warm_up() -> None:
    """The rollout reads any number of given frames (the maze: 36 of 300) while training clips are short: only the
    training warm-up must leave frames of a clip to learn from."""
    long_task = TaskConfig(num_given=6, video_length=12)
    model = RVD(clip=ClipShape(num_frames=4, image_size=8), network=TINY_NETWORK, task=long_task, train_warmup=2)
    assert (model.train_warmup, model.video_length, model.frames_per_pass) == (2, 12, 12)
    with pytest.raises(ValueError, match="train_warmup: null"):
        RVD(clip=ClipShape(num_frames=4, image_size=8), network=TINY_NETWORK, task=long_task)
    with pytest.raises(ValueError, match="video_length"):
        RVD(
            clip=ClipShape(num_frames=4, image_size=8),
            network=TINY_NETWORK,
            task=TaskConfig(num_given=12, video_length=12),
        )


def test_paper_settings_parameter_counts_and_configs() -> None:
    counts = {}
    for name in ("rvd_bair", "rvd_bair_1to15", "rvd_128"):
        args = yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text())["model"]["init_args"]
        network = RVDNetwork(
            RVDNetworkConfig(**args["network"]),
            image_size=args["clip"]["image_size"],
            channels=args["clip"]["channels"],
        )
        counts[name] = sum(p.numel() for p in network.parameters())
        print(f"{name}: {counts[name] / 1e6:.2f}M parameters")
    assert abs(counts["rvd_bair"] / 1e6 - 37.6) < 0.1, "the 64x64 paper setting counts about 37.6M parameters"
    assert counts["rvd_bair_1to15"] == counts["rvd_bair"]
    assert counts["rvd_128"] > counts["rvd_bair"]


def test_predictor_loss_adds_the_l1_error_of_mu_on_the_predicted_frames() -> None:
    batch = batch_of(clip(frames=5))
    plain, weighted = tiny_rvd(), tiny_rvd(predictor_loss_weight=0.5)
    weighted.load_state_dict(plain.state_dict())
    torch.manual_seed(4)
    base = plain.training_loss(batch)
    torch.manual_seed(4)
    total = weighted.training_loss(batch)
    mu, _ = plain.network.teacher_forcing(batch["video"])
    expected = 0.5 * (mu[:, 2:] - batch["video"][:, 2:]).abs().mean()  # frames after the 2 warm-up frames
    torch.testing.assert_close(total - base, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="predictor_loss_weight"):
        tiny_rvd(predictor_loss_weight=-1.0)
