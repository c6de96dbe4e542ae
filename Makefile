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

models: mtcnn crops train evaluate landmarks jpeg-forensics forensics-models  ## every model the kiosk ships (CPU: several hours)

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

# Tamper/morph detection (ELA CNN) and x4 super-resolution (docs/tamper_sr.md).
# Defaults = what was trained for models/ and reports/, except srgan_perceptual (stopped at 500
# steps); see reports/sr.
TAMPER_EPOCHS ?= 20
SR_STEPS ?= 5000
SR_OTHER_STEPS ?= 2500
SR_GAN_STEPS ?= 600
.PHONY: tamper-data tamper-train tamper-eval sr-train sr-eval forensics-models bench-forensics
tamper-data:  ## SYNTHETIC splices, copy-moves, face morphs + authentic twins (data/tamper/)
	$(PY) -m training.tamper.generate
tamper-train:  ## ELA + wavelet-residual CNN on data/tamper (checkpoints in data/runs/tamper_ela)
	$(PY) -m training.tamper.train --epochs $(TAMPER_EPOCHS)
tamper-eval:  ## EER threshold, metrics per type, int8 export -> models/tamper_ela.tflite; localisation
	$(PY) -m training.tamper.evaluate
	$(PY) -m training.tamper.localize
sr-train:  ## the four SR variants (perceptual ones need data/runs/veil/best.keras: make train-veil)
	$(PY) -m training.sr.train mse --steps $(SR_STEPS)
	$(PY) -m training.sr.train perceptual --steps $(SR_OTHER_STEPS)
	$(PY) -m training.sr.train srgan_mse --steps $(SR_GAN_STEPS) --batch 8
	$(PY) -m training.sr.train srgan_perceptual --steps $(SR_GAN_STEPS) --batch 8
sr-eval:  ## PSNR/SSIM on Set5/Set14/BSD68 vs bicubic, TFLite variants -> models/sr_x4.tflite
	$(PY) -m training.sr.evaluate
forensics-models: tamper-data tamper-train sr-train sr-eval tamper-eval  ## all of the above
bench-forensics:  ## latency of each forensic model and of the whole pass on a 640x480 capture
	$(PY) bench/bench_forensics.py
