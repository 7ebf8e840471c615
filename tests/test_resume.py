"""Exact resume: a run stopped at any step (SIGKILL, SIGTERM, at an epoch boundary or mid-epoch) and continued with
``--ckpt_path last`` trains on the same batches with the same random draws as the run that was never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from tests.run_callbacks import read_losses
from tests.tiny_run import run_vdiff, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.datamodules.loaders import ResumableLoader, ResumableSampler, SeededItems

RECORDER = "tests.run_callbacks.RecordLosses"


def signal_at(step: int, name: str) -> list[str]:
    return [
        "--trainer.callbacks+=tests.run_callbacks.SignalAt",
        f"--trainer.callbacks.step={step}",
        f"--trainer.callbacks.signal_name={name}",
    ]


@pytest.fixture
def one_thread():
    """Bit-for-bit equality holds at a fixed thread count: CPU reductions split over more threads add in another
    order. The killed run is a subprocess with one thread (``run_vdiff``), so the in-process runs use one too."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_runs_stopped_three_times_match_the_uninterrupted_run_step_by_step(tmp_path: Path, one_thread) -> None:
    # 16 clips in batches of 4: an epoch is 4 steps; validation, sample videos and evaluation run every epoch.
    settings = dict(trainer={"max_steps": 12}, data={"train_size": 16, "batch_size": 4})
    reference_dir, stopped_dir = tmp_path / "reference", tmp_path / "stopped"
    reference = tiny_config(
        reference_dir,
        callbacks=[{"class_path": RECORDER, "init_args": {"path": str(reference_dir / "losses.jsonl")}}],
        **settings,
    )
    vdiff.run(["fit", "--config", str(reference)])
    expected = read_losses(reference_dir / "losses.jsonl")
    assert sorted(expected) == list(range(1, 13))

    config = tiny_config(
        stopped_dir,
        callbacks=[{"class_path": RECORDER, "init_args": {"path": str(stopped_dir / "losses.jsonl")}}],
        **settings,
    )
    last = stopped_dir / "checkpoints" / "last.ckpt"
    # 1. SIGTERM after step 4, the end of epoch 0: saved, and the exit status says the run did not finish.
    with pytest.raises(SystemExit) as stop:
        vdiff.run(["fit", "--config", str(config), *signal_at(4, "SIGTERM")])
    assert stop.value.code == 128 + 15
    assert torch.load(last, weights_only=True)["global_step"] == 4
    # 2. Resumed, then SIGKILL after step 7: nothing saved since the periodic checkpoint of step 6 (mid-epoch 1).
    killed = run_vdiff("fit", "--config", str(config), "--ckpt_path", "last", *signal_at(7, "SIGKILL"))
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == 6
    # 3. Resumed mid-epoch, SIGTERM after step 9 (mid-epoch 2): saved at step 9.
    with pytest.raises(SystemExit) as stop:
        vdiff.run(["fit", "--config", str(config), "--ckpt_path", "last", *signal_at(9, "SIGTERM")])
    assert stop.value.code == 128 + 15
    assert torch.load(last, weights_only=True)["global_step"] == 9
    # 4. Resumed to the end.
    vdiff.run(["fit", "--config", str(config), "--ckpt_path", "last"])

    lines = (stopped_dir / "losses.jsonl").read_text().splitlines()
    assert len(lines) == 12 + 1, "steps 1-12, and step 7 again after the kill"
    for step, loss in read_losses(stopped_dir / "losses.jsonl").items():
        assert loss == expected[step], f"step {step}: {loss} after resuming, {expected[step]} uninterrupted"
    seen_twice = [float(line.split('"loss": ')[1].rstrip("}")) for line in lines if '"step": 7,' in line]
    assert len(seen_twice) == 2 and seen_twice[0] == seen_twice[1] == expected[7]

    final = torch.load(last, weights_only=True)
    uninterrupted = torch.load(reference_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == uninterrupted["global_step"] == 12
    for name, tensor in uninterrupted["state_dict"].items():  # the weights and the EMA, bit for bit
        assert torch.equal(final["state_dict"][name], tensor), name


class RandomCrops(Dataset):
    """Items drawn from the global RNGs, like a random crop: only per-item seeding makes them reproducible."""

    def __len__(self) -> int:
        return 22

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"index": torch.tensor(index), "crop": torch.rand(3)}


def loader(num_workers: int, replicas: int = 1, rank: int = 0, seed: int = 5) -> ResumableLoader:
    data = RandomCrops()
    return ResumableLoader(
        SeededItems(data, seed),
        batch_size=4,
        sampler=ResumableSampler(data, replicas, rank, seed),
        num_workers=num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )


def epoch(loader: ResumableLoader, number: int) -> list[dict[str, torch.Tensor]]:
    loader.sampler.set_epoch(number)
    return list(loader)


def test_training_loader_is_the_same_with_workers_and_resumes_after_the_batches_trained() -> None:
    torch.manual_seed(0)
    single = [epoch(loader(0), e) for e in range(2)]
    torch.manual_seed(1)  # the global RNG of the main process plays no part
    workers = [epoch(loader(2), e) for e in range(2)]
    for a, b in zip(sum(single, []), sum(workers, [])):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["crop"], b["crop"])
    assert not torch.equal(single[0][0]["index"], single[1][0]["index"]), "each epoch has its own order"
    assert len(single[0]) == 5  # 22 clips in batches of 4, the last partial batch dropped

    # Stopped after 2 batches of epoch 1: a new loader given the saved position yields batches 3-5 of epoch 1.
    first = loader(2)
    first.position = {"epoch": 1, "batches": 2}
    resumed = loader(2)
    resumed.load_state_dict(first.state_dict())
    rest = list(resumed)
    assert len(rest) == 3 and len(resumed) == 5, "Lightning counts the epoch in full; the loader yields the rest"
    for a, b in zip(rest, single[1][2:]):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["crop"], b["crop"])
    assert len(list(resumed)) == 5, "the skip applies to the resumed epoch only"

    # Saved after an epoch's last batch: the next epoch starts from its first batch.
    done = loader(0)
    done.position = {"epoch": 0, "batches": 5}
    nxt = loader(0)
    nxt.load_state_dict(done.state_dict())
    assert nxt.sampler.epoch == 1 and torch.equal(next(iter(nxt))["index"], single[1][0]["index"])


def test_ranks_split_each_epoch_without_overlap() -> None:
    shares = [torch.cat([b["index"] for b in epoch(loader(0, 2, rank), 3)]) for rank in range(2)]
    assert len(set(shares[0].tolist()) & set(shares[1].tolist())) == 0
    assert len(shares[0]) == len(shares[1]) == 8  # 11 clips per rank, two full batches each
