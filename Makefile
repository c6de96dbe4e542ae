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

# JPEG forensics (docs/jpeg_forensics.md). CPU-sized defaults = what was trained for models/.
JPEG_GAN ?= --blocks 4 --filters 32 --l1-epochs 2 --gan-epochs 6 --patches-per-epoch 960
JPEG_EPOCHS ?= 5
JPEG_HARDEN_EPOCHS ?= 8
.PHONY: jpeg-data jpeg-train jpeg-tables jpeg-export jpeg-forensics bench-jpeg
jpeg-data:  ## 64-px patches of never-JPEG photos + JPEG versions (QF 20-95), split by group
	$(PY) -m training.jpeg.data
jpeg-train:  ## plain detectors -> GAN (D = plain KV detector) -> F1/F2/GAN patches -> hardened detector
	$(PY) -m training.jpeg.train kv --epochs $(JPEG_EPOCHS)
	$(PY) -m training.jpeg.train constrained --epochs $(JPEG_EPOCHS)
	$(PY) -m training.jpeg.gan $(JPEG_GAN)
	$(PY) -m training.jpeg.gan --export-data
	$(PY) -m training.jpeg.train kv --variant hardened --init-from-plain --lr 3e-4 --epochs $(JPEG_HARDEN_EPOCHS)
jpeg-tables:  ## paper Tables I/II on held-out pictures -> reports/jpeg_forensics/
	$(PY) -m training.jpeg.tables
jpeg-export:  ## hardened detector -> int8 models/jpeg_history.tflite + manifest entry
	$(PY) -m training.jpeg.export
jpeg-forensics: jpeg-data jpeg-train jpeg-tables jpeg-export  ## all of the above
bench-jpeg:  ## detector latency per 640x480 capture, generator size and latency per 256x256
	$(PY) bench/bench_jpeg.py
