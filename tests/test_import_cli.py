"""vdiff-import and its core ``read_official``: every misfit between a checkpoint and the network rebuilt from its
official arguments is an error naming the weights or the argument concerned; the CLI writes a Lightning checkpoint
that ``<Method>.load_from_checkpoint`` and ``vdiff test`` run. FDM's released CARLA regressor, written by the
official code (``tests/fixtures/carla_regressor``), imports to a network that gives the official outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from video_diffusion_lab import import_cli as vdiff_import
from video_diffusion_lab.metrics.weights import file_sha256
from video_diffusion_lab.networks.official import OfficialCheckpointError, load_official_args, read_official
from video_diffusion_lab.networks.official.carla_regressor import load_imported, read_carla_regressor
from video_diffusion_lab.networks.position_regressor import CellPositionRegressor, ResNetConfig, ResNetTrunk

SHARED = Path(__file__).resolve().parents[2] / "shared" / "official_reference"
needs_reference = pytest.mark.skipif(
    not (SHARED / "manifest.json").is_file(), reason=f"no official reference checkpoints at {SHARED}"
)
RELEASED_REGRESSOR = Path(__file__).resolve().parent / "fixtures" / "carla_regressor"


def entry(method: str) -> dict:
    return json.loads((SHARED / "manifest.json").read_text())[method]


def ramvid_args(**changes) -> dict:
    return {**entry("ramvid")["args"], **changes}


@needs_reference
def test_wrong_official_arguments_name_the_weights_that_do_not_fit():
    with pytest.raises(OfficialCheckpointError, match=r"have no place in the network: .*input_blocks\.") as info:
        read_official("ramvid", SHARED / entry("ramvid")["checkpoint"], ramvid_args(num_res_blocks=2))
    assert "missing from the checkpoint" in str(info.value)
    with pytest.raises(OfficialCheckpointError, match=r"differ in shape: time_embed\.0\.weight"):
        read_official("ramvid", SHARED / entry("ramvid")["checkpoint"], ramvid_args(num_channels=64))


@needs_reference
def test_a_weight_missing_or_left_over_is_named(tmp_path):
    state = torch.load(SHARED / entry("ramvid")["checkpoint"], weights_only=True)
    missing = dict(state)
    del missing["middle_block.1.qkv.weight"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(OfficialCheckpointError, match=r"missing from the checkpoint: middle_block\.1\.qkv\.weight"):
        read_official("ramvid", tmp_path / "missing.pt", ramvid_args())
    torch.save({**state, "label_emb.weight": torch.zeros(3, 4)}, tmp_path / "extra.pt")
    with pytest.raises(OfficialCheckpointError, match=r"no place in the network: label_emb\.weight"):
        read_official("ramvid", tmp_path / "extra.pt", ramvid_args())


@needs_reference
def test_argument_errors_name_the_argument(tmp_path):
    path = SHARED / entry("ramvid")["checkpoint"]
    with pytest.raises(OfficialCheckpointError, match="scale_time_dim"):
        read_official("ramvid", path, {k: v for k, v in ramvid_args().items() if k != "scale_time_dim"})
    with pytest.raises(OfficialCheckpointError, match="unknown RaMViD flags.*num_channel"):
        read_official("ramvid", path, ramvid_args(num_channel=32))
    with pytest.raises(OfficialCheckpointError, match="class_cond"):
        read_official("ramvid", path, ramvid_args(class_cond=True))
    rvd = SHARED / entry("rvd")["checkpoint"]
    with pytest.raises(OfficialCheckpointError, match="img_size"):
        read_official("rvd", rvd, {k: v for k, v in entry("rvd")["args"].items() if k != "img_size"})
    with pytest.raises(OfficialCheckpointError, match="iteration_step"):
        read_official("rvd", rvd, {**entry("rvd")["args"], "iteration_step": 1000})
    checkpoint = torch.load(SHARED / entry("fdm")["checkpoint"], weights_only=True)
    del checkpoint["config"]["use_rpe_net"]
    torch.save(checkpoint, tmp_path / "fdm.pt")
    with pytest.raises(OfficialCheckpointError, match="use_rpe_net"):
        read_official("fdm", tmp_path / "fdm.pt")
    with pytest.raises(OfficialCheckpointError, match="RVD's {'step', 'model', 'ema'}"):
        read_official("rvd", path, entry("rvd")["args"])


def test_official_args_json_errors_and_files(tmp_path):
    assert load_official_args('{"image_size": 64}') == {"image_size": 64}
    (tmp_path / "args.json").write_text('{"num_res_blocks": 3}')
    assert load_official_args(str(tmp_path / "args.json")) == {"num_res_blocks": 3}
    for bad in ('{"image_size": 64', "[1, 2]", str(tmp_path / "nope.json")):
        with pytest.raises(OfficialCheckpointError, match="--official-args"):
            load_official_args(bad)


def test_checkpoints_load_with_weights_only(tmp_path):
    """A file holding pickled objects other than tensors and plain containers is refused, not executed."""
    torch.save({"state_dict": {}, "config": Path("x")}, tmp_path / "pickled.pt")
    with pytest.raises(OfficialCheckpointError, match="weights_only=True"):
        read_official("fdm", tmp_path / "pickled.pt")
    with pytest.raises(OfficialCheckpointError, match="no such checkpoint"):
        read_official("fdm", tmp_path / "absent.pt")


@needs_reference
def test_learned_variance_checkpoints_import_the_mean_half(tmp_path):
    """learn_sigma=True networks output 2C channels (eps, then the variance); the import keeps the first C."""
    state = torch.load(SHARED / entry("ramvid")["checkpoint"], weights_only=True)
    weight, bias = state["out.2.weight"], state["out.2.bias"]
    state["out.2.weight"] = torch.cat([weight, torch.randn_like(weight)])
    state["out.2.bias"] = torch.cat([bias, torch.randn_like(bias)])
    torch.save(state, tmp_path / "ema_0.9999_000010.pt")
    imported = read_official("ramvid", tmp_path / "ema_0.9999_000010.pt", ramvid_args(learn_sigma=True))
    assert torch.equal(imported.state_dict["out.conv.weight"], weight)
    assert torch.equal(imported.state_dict["out.conv.bias"], bias)
    assert imported.diffusion.learn_sigma and imported.step == 10 and imported.training["ema_rate"] == 0.9999
    assert any("learn_sigma" in note for note in imported.notes)
    with pytest.raises(OfficialCheckpointError, match="differ in shape: out.2.weight"):
        read_official("ramvid", tmp_path / "ema_0.9999_000010.pt", ramvid_args())


@needs_reference
def test_imported_settings_follow_the_official_arguments():
    fdm = read_official("fdm", SHARED / entry("fdm")["checkpoint"])
    config = torch.load(SHARED / entry("fdm")["checkpoint"], weights_only=True)["config"]
    assert (fdm.max_frames, fdm.video_length) == (config["max_frames"], config["T"])
    assert fdm.image_size == config["image_size"]
    assert fdm.config.model_channels == config["num_channels"] and fdm.config.temporal_norm == "official"
    assert (fdm.diffusion.schedule, fdm.diffusion.steps, fdm.diffusion.prediction) == (
        config["noise_schedule"],
        config["diffusion_steps"],
        "x0" if config["predict_xstart"] else "eps",
    )
    rvd = read_official("rvd", SHARED / entry("rvd")["checkpoint"], entry("rvd")["args"])
    steps = entry("rvd")["args"]["iteration_step"]
    assert (rvd.diffusion.schedule, rvd.diffusion.steps) == ("cosine", steps)
    assert rvd.config.time_scale == steps / 1000  # the released denoiser embeds the raw step


def test_weights_flag_is_for_rvd_only(capsys):
    assert vdiff_import.main(["fdm", "x.pt", "--out", "y.ckpt", "--weights", "model"]) == 2
    assert "holds one set of weights" in capsys.readouterr().err
    assert vdiff_import.main(["fdm", "absent.pt", "--out", "y.ckpt"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


@needs_reference
def test_cli_checkpoint_loads_and_runs_with_vdiff_test(tmp_path, capsys):
    from tests.tiny_run import tiny_config
    from video_diffusion_lab import cli as vdiff
    from video_diffusion_lab.groups import DiffusionConfig
    from video_diffusion_lab.lightning_modules import RaMViD

    out = tmp_path / "ramvid.ckpt"
    args = ramvid_args(seq_len=6, max_num_mask_frames=2, uncondition_rate=0.25)
    official = SHARED / entry("ramvid")["checkpoint"]
    assert vdiff_import.main(["ramvid", str(official), "--out", str(out), "--official-args", json.dumps(args)]) == 0
    assert f"-> {out}" in capsys.readouterr().out

    checkpoint = torch.load(out, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["_class_path"] == "video_diffusion_lab.lightning_modules.RaMViD"
    assert hparams["_instantiator"] == "pytorch_lightning.cli.instantiate_module"
    assert hparams["clip"] == {"num_frames": 6, "image_size": args["image_size"], "channels": 3}
    assert (hparams["p_uncond"], hparams["max_given"]) == (0.25, 2)
    imported = read_official("ramvid", official, args)
    for key, value in imported.state_dict.items():  # the same weights in the network and its EMA copy
        assert torch.equal(checkpoint["state_dict"][f"network.{key}"], value)
        assert torch.equal(checkpoint["state_dict"][f"ema.module.{key}"], value)
    assert int(checkpoint["state_dict"]["ema.num_updates"]) == imported.step == 1234

    module = RaMViD.load_from_checkpoint(out, map_location="cpu")
    assert module.diffusion == DiffusionConfig(schedule="linear", steps=1000, prediction="eps")
    assert module.network.config == imported.config

    # vdiff runs the model its config describes: the main job's (tiny) config with the overlay written beside the
    # checkpoint (the released network, clip and diffusion) runs the imported weights.
    overlay = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert overlay["model"]["class_path"] == "video_diffusion_lab.lightning_modules.RaMViD"
    assert overlay["model"]["init_args"]["network"] == hparams["network"]
    run = tmp_path / "run"
    config = tiny_config(run, data={"image_size": args["image_size"], "num_frames": 6, "size_range": [4.0, 6.0]})
    vdiff.run(["test", "--config", str(config), "--config", str(out.with_suffix(".yaml")), "--ckpt_path", str(out)])
    report = json.loads((run / "metrics_test.json").read_text())
    assert report["checkpoint_global_step"] == 1234 and report["num_videos"] == 4


def import_released_regressor(out: Path, classifier: str = "classifier", regressor: str = "regressor") -> int:
    return vdiff_import.main(
        [
            "carla_regressor",
            str(RELEASED_REGRESSOR / f"{regressor}_checkpoint.pth"),
            "--classifier",
            str(RELEASED_REGRESSOR / f"{classifier}_checkpoint.pth"),
            "--out",
            str(out),
        ]
    )


def test_released_carla_regressor_gives_the_official_outputs(tmp_path):
    """The two files the official carla_regressor.py saved, imported, give the official code's cells and positions
    for the same uint8 frames, fed as the data modules give frames (in [-1, 1])."""
    assert import_released_regressor(tmp_path / "carla_regressor.pt") == 0
    network, record = load_imported(tmp_path / "carla_regressor.pt")
    official = torch.load(RELEASED_REGRESSOR / "official_outputs.pt", weights_only=True)
    frames = official["frames"].permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        logits, _ = network(network.normalise(frames))
        positions = network.positions(frames)
    assert len(set(official["cells"].tolist())) >= 4, "the fixture routes frames through several cells' heads"
    assert torch.equal(logits.argmax(dim=1), official["cells"])
    torch.testing.assert_close(logits, official["classifier_logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(positions, official["coords"], rtol=1e-6, atol=1e-3)  # metres, values in the 100s
    for role in ("classifier", "regressor"):
        assert record["sources"][role]["sha256"] == file_sha256(RELEASED_REGRESSOR / f"{role}_checkpoint.pth")
    assert record["kind"] == "released" and record["sha256"] == file_sha256(tmp_path / "carla_regressor.pt")


def test_released_carla_regressor_default_is_two_resnet152s():
    """torchvision's resnet152 has 60,192,808 parameters, 2,049,000 of them in its 1000-way fc: the released pair is
    two such trunks, a 100-way classifier layer and 100 heads of 2 x 2048 + 2."""
    with torch.device("meta"):
        trunk, network = ResNetTrunk(ResNetConfig()), CellPositionRegressor()
    assert sum(p.numel() for p in trunk.parameters()) == 60_192_808 - 2_049_000
    assert sum(p.numel() for p in network.parameters()) == 2 * 58_143_808 + 2048 * 100 + 100 + 100 * (2 * 2048 + 2)


def test_released_carla_regressor_misfits_are_named(tmp_path, capsys):
    assert import_released_regressor(tmp_path / "r.pt", classifier="regressor", regressor="classifier") == 1
    assert "fc.weight" in capsys.readouterr().err, "the swapped files are named as such"
    state = torch.load(RELEASED_REGRESSOR / "regressor_checkpoint.pth", weights_only=True)
    del state["resnet.layer2.1.bn2.running_var"]
    torch.save(state, tmp_path / "regressor_checkpoint.pth")
    with pytest.raises(OfficialCheckpointError, match=r"missing from the checkpoint: regressor\.stages\.1\.1\.spatial"):
        read_carla_regressor(RELEASED_REGRESSOR / "classifier_checkpoint.pth", tmp_path / "regressor_checkpoint.pth")
    state = torch.load(RELEASED_REGRESSOR / "regressor_checkpoint.pth", weights_only=True)
    state["regressors.100.weight"], state["regressors.100.bias"] = torch.zeros(2, 512), torch.zeros(2)
    torch.save(state, tmp_path / "regressor_checkpoint.pth")
    with pytest.raises(OfficialCheckpointError, match="100 cells but the regressor 101 heads"):
        read_carla_regressor(RELEASED_REGRESSOR / "classifier_checkpoint.pth", tmp_path / "regressor_checkpoint.pth")
    assert vdiff_import.main(["carla_regressor", str(tmp_path / "regressor_checkpoint.pth"), "--out", "x.pt"]) == 2
    assert "--classifier" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="vdiff-import carla_regressor"):
        load_imported(tmp_path / "absent.pt")
