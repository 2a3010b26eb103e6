# Set-up is part of every target: the first run creates .venv with Python 3.10 and installs
# the pinned stack from requirements.lock (uv resolves and installs in seconds).
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
UV_VERSION := 0.13.9

DATASET  ?= synthetic
DATA_DIR ?=
WORKDIR  ?= workdir
ARGS     ?=
PYTEST_ARGS ?=

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONUNBUFFERED := 1

DATA_DIR_ARG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

# Kubeflow: where the pipeline's data, artifacts and pushed models live on the cluster.
DATA_ROOT     ?= gs://YOUR_BUCKET/movielens/ml-100k
PIPELINE_ROOT ?= gs://YOUR_BUCKET/movielens/root
IMAGE         ?= movielens-recommender-pipeline:latest

MODEL_NAME ?= sequential
MODEL_BASE_PATH ?= $(WORKDIR)/serving_models/$(MODEL_NAME)

.PHONY: install demo test serve serving-config bench-quality bench-replay bench-continuous bench-pipeline bench-serving bench-training lock clean help \
	kubeflow-compile kubeflow-image

help:
	@echo "make demo [DATASET=synthetic|ml-100k|ml-1m|ml-latest-small|ml-20m|ml-25m|ml-32m] [DATA_DIR=...] [WORKDIR=workdir] [ARGS=...]"
	@echo "make test            # the test suite (pytest)"
	@echo "make serve [MODEL_BASE_PATH=...] [ARGS=--enable_batching]  # TF Serving APIs on 8500/8501"
	@echo "make serving-config MODEL_BASE_PATH=/models/sequential  # models.config + batching file"
	@echo "make bench-serving   # gRPC/REST latency and throughput; ScaNN vs brute force at 1M"
	@echo "make bench-quality   # top-k accuracy, NDCG@10 vs baselines (sequential: leave-last-out) [DATA_DIR=ml-100k or ml-1m folder] [ARGS=--model sequential]"
	@echo "make bench-replay    # the future replayed in time order: models vs baselines per segment [DATA_DIR=...] [ARGS=--cut-date 1998-03-01]"
	@echo "make bench-continuous # week-by-week retraining: warm vs cold vs frozen vs EASE vs popular [DATA_DIR=...]"
	@echo "make bench-training RUN_WORKDIR=<a pipeline workdir> [ARGS='--batch-size 128']  # a training step: examples/s, FLOP/s against the peak"
	@echo "make bench-pipeline  # per component: time, peak memory, ratings/s at 1M, 3M, 10M ratings [DATA_DIR=...] [ARGS=\"--sizes 1M --stop-after FileBasedExampleGen\"]"
	@echo "make kubeflow-compile DATA_ROOT=gs://... PIPELINE_ROOT=gs://... IMAGE=...  # KFP V2 spec"
	@echo "make kubeflow-image IMAGE=...   # build the pipeline image (needs Docker)"
	@echo "make lock            # re-resolve requirements.in into requirements.lock"

install: $(STAMP)

$(STAMP): requirements.lock setup.py
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  python=$${PYTHON:-$$(scripts/find_python310.sh)}; \
	  echo "Creating $(VENV) with $$python"; \
	  "$$python" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install -q "uv==$(UV_VERSION)"; \
	$(VENV)/bin/uv pip install --python $(PY) -r requirements.lock; \
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .; \
	touch $@

demo: $(STAMP)
	$(PY) -m pipeline run --dataset $(DATASET) $(DATA_DIR_ARG) --workdir $(WORKDIR) $(ARGS)
	$(PY) -m pipeline recommend --workdir $(WORKDIR) --model-name $(MODEL_NAME) --user 1 --user 2 \
	  --history 1,2,3 -k 10
	$(PY) -m serving.demo --model-base-path $(MODEL_BASE_PATH) --model-name $(MODEL_NAME)

serve: $(STAMP)
	$(PY) -m serving --model_name $(MODEL_NAME) --model_base_path $(MODEL_BASE_PATH) $(ARGS)

serving-config: $(STAMP)
	$(PY) -m serving.config_files --model-name $(MODEL_NAME) --model-base-path $(MODEL_BASE_PATH) \
	  --models-config $(WORKDIR)/models.config --batching-config $(WORKDIR)/batching_parameters.txt $(ARGS)

# The model card's test renders it in a real browser: Chromium, Debian's package.
test: $(STAMP)
	@scripts/install_tools.sh chromium:chromium
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench-quality: $(STAMP)
	$(PY) -m benchmarks.quality $(DATA_DIR_ARG) $(ARGS)

bench-training: $(STAMP)
	$(PY) -m benchmarks.training_step --run-workdir $(RUN_WORKDIR) $(ARGS)

bench-replay: $(STAMP)
	$(PY) -m benchmarks.replay $(DATA_DIR_ARG) $(ARGS)

bench-continuous: $(STAMP)
	$(PY) -m benchmarks.continuous $(DATA_DIR_ARG) $(ARGS)

kubeflow-compile: $(STAMP)
	$(PY) -m kubeflow.runner --data-root $(DATA_ROOT) --pipeline-root $(PIPELINE_ROOT) \
	  --image $(IMAGE) $(ARGS)

kubeflow-image:
	docker build -f kubeflow/Dockerfile -t $(IMAGE) .

bench-pipeline: $(STAMP)
	$(PY) -m benchmarks.pipeline $(DATA_DIR_ARG) $(ARGS)

# REST load comes from wrk, gRPC load from the Python stubs and h2load (Debian packages, installed
# here when apt-get can; without them the script says so and measures what it can).
bench-serving: $(STAMP)
	@scripts/install_tools.sh wrk:wrk h2load:nghttp2-client || echo "(measuring without them)"
	$(PY) -m benchmarks.serving $(DATA_DIR_ARG) $(ARGS)

lock: $(STAMP)
	$(VENV)/bin/uv pip compile --python-version 3.10 requirements.in -o requirements.lock

clean:
	rm -rf $(WORKDIR) .pytest_cache
