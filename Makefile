# Two entry points, both self-contained on a fresh machine:
#   make demo   set up .venv, train RaMViD on the embedded data set, test it, sample videos
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG := experiments/ramvid_shapes.yaml
RUN_DIR := runs/ramvid_shapes

.PHONY: setup demo test lint docs clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned, so that a CPU machine gets the CPU build rather than a multi-GB CUDA one
	$(BIN)/pip install torch==2.13.0
	# LitData without its declared torchvision (see setup.cfg, extra "streaming")
	$(BIN)/pip install --no-deps litdata==0.2.76
	$(BIN)/pip install -e ".[dev,streaming]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/vdiff fit --config $(CONFIG) --trainer.default_root_dir $(RUN_DIR)
	$(BIN)/vdiff test --config $(CONFIG) --trainer.default_root_dir $(RUN_DIR) --ckpt_path last
	$(BIN)/vdiff predict --config $(CONFIG) --trainer.default_root_dir $(RUN_DIR) --ckpt_path last --model.init_args.task.video_length 16
	@echo
	@echo "Run folder:   $(RUN_DIR)"
	@echo "Metrics:      $(RUN_DIR)/metrics_test.json"
	@echo "Checkpoints:  $(RUN_DIR)/checkpoints"
	@echo "Videos:       $(RUN_DIR)/videos (validation samples), $(RUN_DIR)/predictions (predict)"
	@echo "W&B (offline): $(RUN_DIR)/wandb   (upload later with: $(BIN)/wandb sync $(RUN_DIR)/wandb/offline-run-*)"

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: setup
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(RUN_DIR) .pytest_cache
