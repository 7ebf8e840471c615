"""The Python API on a trained run: `python docs/examples/python_api.py RUN_FOLDER` (e.g. runs/ramvid_shapes)."""

import sys

from video_diffusion_lab import load_run

run = load_run(sys.argv[1])  # config_fit.yaml and checkpoints/last.ckpt of the run
batch = run.batch("test", size=2)  # two held-out clips, (B, T, C, H, W) in [-1, 1]
samples = run.sample(batch)  # the configured task, e.g. frames 3.. given frames 1-2
print("sampled", tuple(samples.shape))

given = batch["video"][:, :2]
video = run.predict(given, length=12)  # 12 frames from 2 given ones, stage by stage
print("predicted", tuple(video.shape))

report = run.evaluate(limit_batches=1)  # what `vdiff test` writes to metrics_test.json
print("PSNR", report["model"]["psnr_mean"], "copy-last-frame", report["copy_last_frame"]["psnr_mean"])
