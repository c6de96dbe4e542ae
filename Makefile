# idkiosk — one entry point for setup, tests, training and benchmarks.
PY ?= .venv/bin/python
DATA_ROOT ?= ../shared/datasets
export IDKIOSK_DATA_ROOT := $(DATA_ROOT)
TASKS := eyes mouth veil

.PHONY: setup test lint models mtcnn crops train evaluate landmarks bench clean-work
.PHONY: deploy

setup:  ## create .venv with runtime, training and test dependencies
	bash scripts/setup.sh

test:  ## the test command CI runs
	$(PY) -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check kiosk

mtcnn:  ## export the mtcnn package's P/R/O-Nets to TFLite
	$(PY) -m training.export_mtcnn

crops:  ## data collection: the kiosk pipeline over the datasets
	$(PY) -m training.collect

train: $(addprefix train-,$(TASKS))
train-%:
	$(PY) -m training.train $*

evaluate: $(addprefix evaluate-,$(TASKS))
evaluate-%:
	$(PY) -m training.evaluate $*

landmarks:  ## retrain dlib's shape predictor on MTCNN boxes and compare with the stock model
	$(PY) -m training.landmarks

models: mtcnn crops train evaluate landmarks  ## everything: data, training, evaluation, export

bench:  ## pipeline latency per stage, ours vs the mtcnn package, and peak RSS
	$(PY) bench/bench_pipeline.py

clean-work:
	rm -rf data/crops data/runs

KIOSKS ?=
DEPLOY_ARGS ?=
deploy:  ## ship models/ to KIOSKS="pi@kiosk1 pi@kiosk2" as a checked bundle; rolls back if unhealthy
	@test -n "$(KIOSKS)" || { echo 'usage: make deploy KIOSKS="pi@kiosk1 pi@kiosk2" [DEPLOY_ARGS=...]' >&2; exit 2; }
	$(PY) -m kiosk.deploy $(DEPLOY_ARGS) $(KIOSKS)

.PHONY: run bench-service
run:  ## the capture service and operator console (http://127.0.0.1:8080/); SOURCE=folder|camera:N|picamera
	$(PY) -m kiosk -v run $(if $(SOURCE),--source $(SOURCE))

FRAMES ?= 10000
bench-service:  ## service loop checks/s, MJPEG preview latency, RSS after 100 vs FRAMES frames
	$(PY) bench/bench_service.py --frames $(FRAMES)
