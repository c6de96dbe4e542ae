# idkiosk — one entry point for setup, tests, training and benchmarks.
PY ?= .venv/bin/python
# Data root: DATA_ROOT=..., else $$IDKIOSK_DATA_ROOT, else ../shared/datasets (training/paths.py).
ifneq ($(DATA_ROOT),)
export IDKIOSK_DATA_ROOT := $(DATA_ROOT)
endif
WORK := data
TASKS := eyes mouth veil

.PHONY: setup test lint models bench clean-work
.PHONY: deploy

setup:  ## create .venv with runtime, training and test dependencies
	bash scripts/setup.sh

test:  ## the test command CI runs
	$(PY) -m pytest

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check kiosk

# Training: every task has the stages <task>-data -> <task>-train -> <task>-export (export =
# convert to TFLite, score the exported file, set the threshold, copy into models/ and write the
# manifest entry); a report-only evaluation beside the export is <task>-evaluate. Checkpoints
# are file prerequisites, so a stage that needs another task's output builds it first.
# docs/training.md.
.PHONY: splits compliance-data mtcnn-export landmarks-export
.PHONY: $(addsuffix -train,$(TASKS)) $(addsuffix -export,$(TASKS))
splits:  ## rewrite training/splits/<dataset>.csv (persisted by-person/photo splits) from the data
	$(PY) -m training.splits

mtcnn-export:  ## the mtcnn package's P/R/O-Nets -> float32 TFLite + manifest entries
	$(PY) -m training.export_mtcnn

# Every crop, landmark model and threshold belongs to one detector (the kiosk's default: YuNet).
DETECTOR ?= yunet
compliance-data: $(WORK)/crops/drops.csv  ## crops of eyes/mouth/veil: the kiosk pipeline over the datasets
$(WORK)/crops/drops.csv: $(wildcard training/splits/*.csv)
	$(PY) -m training.collect --detector $(DETECTOR)

# The eye model alone (issue 12): pipeline eye crops of faces68, CEW closed faces and
# mask/without_mask open faces + the close-ups; faces68_ytf stays out (reported as unseen).
.PHONY: eyes-data eyes-candidate mouth-candidate veil-candidate eyes-ship mouth-ship veil-ship
eyes-data: $(WORK)/crops/eyes.npz  ## eye crops only (no mouth/veil analyses)
$(WORK)/crops/eyes.npz: $(wildcard training/splits/*.csv)
	$(PY) -m training.collect --detector $(DETECTOR) --tasks eyes

$(addsuffix -train,$(TASKS)): %-train: $(WORK)/runs/%/best.keras
$(WORK)/runs/eyes/best.keras: $(WORK)/crops/eyes.npz
	$(PY) -m training.train eyes
$(WORK)/runs/%/best.keras: $(WORK)/crops/drops.csv
	$(PY) -m training.train $*

$(addsuffix -export,$(TASKS)): %-export: $(WORK)/runs/%/best.keras  ## int8 -> models/<check>.tflite
	$(PY) -m training.evaluate $*

# The stock model's points on CEW and web faces teach the small model eyelids 300-W lacks
# (reports/landmarks/yunet, reports/landmarks).
landmarks-export:  ## retrain dlib's shape predictor on $(DETECTOR) boxes; ships (its trees as .npz + manifest) if it qualifies
	$(PY) -m training.landmarks --detector $(DETECTOR) --distill

# A retrained eye, mouth or veil model is judged per face against the shipped one before anything
# ships: <task>-candidate exports it into a copy of models/ and runs the per-face evaluation on
# that copy (writes nothing to models/; only photos with that task's label run again);
# <task>-ship exits unless the candidate wins on the held-out sources, then adopts the
# candidate's model file (the bytes the rows were scored with; a new export would differ) and
# crop report, and ships thresholds + fusion (docs/verdicts.md).
CANDIDATE := $(WORK)/candidate
MODEL_eyes := eyes_closed
MODEL_mouth := mouth_open
MODEL_veil := veil
eyes-candidate mouth-candidate: %-candidate: $(WORK)/runs/%/best.keras  ## retrained eyes/mouth in a copy of models/ -> $(CANDIDATE)/verdicts/
	rm -rf $(CANDIDATE)/models && mkdir -p $(CANDIDATE) && cp -r models $(CANDIDATE)/models
	$(PY) -m training.evaluate $* --models-dir $(CANDIDATE)/models --reports $(CANDIDATE)/reports --latency-runs 100
	$(PY) -m training.evaluate_faces --detector $(DETECTOR) --models-dir $(CANDIDATE)/models --out $(CANDIDATE)/faces_$(DETECTOR).csv --reuse $(WORK)/verdicts/faces_$(DETECTOR).csv --rerun $*
	$(PY) -m training.verdicts --detector $(DETECTOR) --faces $(CANDIDATE)/faces_$(DETECTOR).csv --before $(WORK)/verdicts/faces_$(DETECTOR).csv --retrained $(MODEL_$*) --reports $(CANDIDATE)/verdicts
veil-candidate: $(WORK)/runs/veil/best.keras  ## retrained veil in a copy of models/ (every photo runs again) -> $(CANDIDATE)/verdicts/
	rm -rf $(CANDIDATE)/models && mkdir -p $(CANDIDATE) && cp -r models $(CANDIDATE)/models
	$(PY) -m training.evaluate veil --models-dir $(CANDIDATE)/models --reports $(CANDIDATE)/reports --latency-runs 100
	$(PY) -m training.evaluate_faces --detector $(DETECTOR) --models-dir $(CANDIDATE)/models --out $(CANDIDATE)/faces_$(DETECTOR).csv
	$(PY) -m training.verdicts --detector $(DETECTOR) --faces $(CANDIDATE)/faces_$(DETECTOR).csv --before $(WORK)/verdicts/faces_$(DETECTOR).csv --retrained veil --reports $(CANDIDATE)/verdicts
eyes-ship mouth-ship veil-ship: %-ship: $(WORK)/verdicts/faces_$(DETECTOR).csv  ## after <task>-candidate: only if it wins, models/<check>.tflite + manifest + reports
	$(PY) -m training.verdicts --detector $(DETECTOR) --faces $(CANDIDATE)/faces_$(DETECTOR).csv --before $< --retrained $(MODEL_$*) --reports $(CANDIDATE)/verdicts --require-win
	cp $< $(WORK)/verdicts/faces_$(DETECTOR)_before_$*.csv
	cp $(CANDIDATE)/faces_$(DETECTOR).csv $<
	$(PY) -m training.verdicts --detector $(DETECTOR) --before $(WORK)/verdicts/faces_$(DETECTOR)_before_$*.csv --retrained $(MODEL_$*) --adopt $(CANDIDATE)/models --ship
	rm -rf reports/$(MODEL_$*) && cp -r $(CANDIDATE)/reports/$(MODEL_$*) reports/

# Per-face, whole-pipeline evaluation of the three verdicts (docs/verdicts.md): every photo of
# every source through the kiosk's detector, landmarks, crops and checks, then thresholds that
# hold across sources, geometry fusion and per-source tables. ~20 min on 2 busy CPU cores;
# VERDICT_LIMIT=N takes N photos per source.
VERDICT_LIMIT ?=
.PHONY: verdicts verdicts-ship
verdicts:  ## per-face tables -> reports/verdicts/$(DETECTOR).md (writes nothing to models/)
	$(PY) -m training.evaluate_faces --detector $(DETECTOR) $(if $(VERDICT_LIMIT),--limit $(VERDICT_LIMIT))
	$(PY) -m training.verdicts --detector $(DETECTOR)
verdicts-ship: $(WORK)/verdicts/faces_$(DETECTOR).csv  ## chosen thresholds (+ fusion where it won) -> models/manifest.json
	$(PY) -m training.verdicts --detector $(DETECTOR) --ship
$(WORK)/verdicts/faces_%.csv:
	$(PY) -m training.evaluate_faces --detector $*

models: mtcnn-export compliance-data $(addsuffix -export,$(TASKS)) landmarks-export jpeg-forensics forensics-models  ## every model the kiosk ships (CPU: several hours)

# Old target names, kept for scripts and docs that use them.
.PHONY: mtcnn crops train evaluate landmarks
mtcnn: mtcnn-export
crops: compliance-data
landmarks: landmarks-export
train: $(addsuffix -train,$(TASKS))
evaluate: $(addsuffix -export,$(TASKS))
train-%: %-train ;
evaluate-%: %-export ;

bench:  ## pipeline latency per stage, ours vs the mtcnn package, and peak RSS
	$(PY) bench/bench_pipeline.py

clean-work:
	rm -rf data/crops data/runs

KIOSKS ?=
DEPLOY_ARGS ?=
DEPLOY_SIGNING_KEY ?=
# Handed over in the environment and read by Python as data: never expanded into the recipe,
# so no kiosk name or argument can become shell syntax.
export KIOSKS DEPLOY_ARGS DEPLOY_SIGNING_KEY
deploy:  ## sign models/ and ship them with Ansible to KIOSKS="pi@kiosk1 pi@kiosk2"; rolls back if unhealthy
	$(PY) -m deploy --kiosks "$$KIOSKS" --args "$$DEPLOY_ARGS"

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
.PHONY: jpeg-data jpeg-train jpeg-evaluate jpeg-tables jpeg-export jpeg-forensics bench-jpeg
jpeg-data:  ## 64-px patches of never-JPEG photos + JPEG versions (QF 20-95), split by group
	$(PY) -m training.jpeg.data
jpeg-train:  ## plain detectors -> GAN (D = plain KV detector) -> F1/F2/GAN patches -> hardened detector
	$(PY) -m training.jpeg.train kv --epochs $(JPEG_EPOCHS)
	$(PY) -m training.jpeg.train constrained --epochs $(JPEG_EPOCHS)
	$(PY) -m training.jpeg.gan $(JPEG_GAN)
	$(PY) -m training.jpeg.gan --export-data
	$(PY) -m training.jpeg.train kv --variant hardened --init-from-plain --lr 3e-4 --epochs $(JPEG_HARDEN_EPOCHS)
jpeg-evaluate:  ## paper Tables I/II on held-out pictures -> reports/jpeg_forensics/
	$(PY) -m training.jpeg.tables
jpeg-tables: jpeg-evaluate
jpeg-export:  ## hardened detector -> int8 models/jpeg_history.tflite + manifest entry
	$(PY) -m training.jpeg.export
jpeg-forensics: jpeg-data jpeg-train jpeg-evaluate jpeg-export  ## all of the above
# The adaptive attack (issue 15 item 4): the paper-size generator (16 x 64) against a frozen
# replica of the shipped models/jpeg_history.tflite. The reports come from accelerator runs
# (docs/jpeg_forensics.md: jpeg-adaptive-bundle here, training/jpeg/adaptive_gpu.py there,
# --import-gpu back here); jpeg-adaptive is the CPU-sized fallback (600 steps of batch 8, ~1 h
# on one core; after jpeg-data), which overwrites data/jpeg/adaptive.
.PHONY: jpeg-adaptive jpeg-adaptive-bundle jpeg-adaptive-report
jpeg-adaptive:  ## adaptive attack on the shipped JPEG detector, CPU-sized -> reports/jpeg_forensics/adaptive.md
	$(PY) -m training.jpeg.adaptive --batch 8 --lr 2e-4 --steps 600 --resume
	$(PY) -m training.jpeg.adaptive_report
jpeg-adaptive-bundle: jpeg-data  ## what training/jpeg/adaptive_gpu.py needs on an accelerator -> gpu_bundle/
	$(PY) -m training.jpeg.adaptive --export-gpu-bundle gpu_bundle
jpeg-adaptive-report:  ## after --import-gpu of both runs: adaptive.md, adaptive_comb.md, adaptive_frames.md
	$(PY) -m training.jpeg.adaptive_report
	$(PY) -m training.jpeg.adaptive_report --generator-dir $(WORK)/jpeg/adaptive_comb --name adaptive_comb --beside reports/jpeg_forensics/adaptive.json
	$(PY) -m training.jpeg.adaptive_frames
bench-jpeg:  ## detector latency per 640x480 capture, generator size and latency per 256x256
	$(PY) bench/bench_jpeg.py

# Tamper/morph detection (ELA CNN) and x4 super-resolution (docs/tamper_sr.md).
# Defaults = what was trained for models/ and reports/ (reports/sr).
TAMPER_EPOCHS ?= 20
SR_STEPS ?= 15000
# then on to SR_RESTART_STEPS with a new cosine schedule from there (a warm restart: +0.07 dB
# on the validation patches, reports/sr)
SR_RESTART_STEPS ?= 30000
# then the shipped generator: a fine-tune of that one in runs/sr_mse_decay, Adam SR_DECAY_LR with a
# cosine to SR_DECAY_LR_MIN, LR patches of SR_DECAY_PATCH px (validation +0.03 dB; one pass on
# the kiosk, the sr_x4 spec's self_ensemble: reports/sr/decay_ensemble_trial.md)
SR_DECAY_STEPS ?= 8000
SR_DECAY_LR ?= 2e-4
SR_DECAY_LR_MIN ?= 1e-6
SR_DECAY_PATCH ?= 40
SR_DECAY_BATCH ?= 12
SR_DECAY = --run sr_mse_decay --init sr_mse --steps $(SR_DECAY_STEPS) --lr $(SR_DECAY_LR) \
	--lr-min $(SR_DECAY_LR_MIN) --lr-patch $(SR_DECAY_PATCH) --batch $(SR_DECAY_BATCH)
SR_SHIP = --channels $(SR_CHANNELS) --blocks $(SR_BLOCKS) --pixel-loss $(SR_LOSS)
SR_CHANNELS ?= 32
SR_BLOCKS ?= 5
SR_LOSS ?= l1
# The three other variants fine-tune the mse generator with an equal budget: the same steps of
# the same batch (issue 15 item 5; an SRGAN step costs ~3.4 s on one core here, perceptual ~0.3 s)
SR_VARIANT_STEPS ?= 600
.PHONY: tamper-data tamper-train tamper-export tamper-evaluate sr-train sr-export
.PHONY: tamper-eval sr-eval forensics-models bench-forensics splice
tamper-data: $(WORK)/tamper/index.csv  ## SYNTHETIC splices, copy-moves, face morphs + authentic twins
$(WORK)/tamper/index.csv: $(wildcard training/splits/*.csv)
	$(PY) -m training.tamper.generate
tamper-train: $(WORK)/tamper/index.csv  ## ELA + wavelet-residual CNN (checkpoints in data/runs/tamper_ela)
	$(PY) -m training.tamper.train --epochs $(TAMPER_EPOCHS)
$(WORK)/runs/tamper_ela/best.keras: $(WORK)/tamper/index.csv
	$(PY) -m training.tamper.train --epochs $(TAMPER_EPOCHS)
tamper-export: | $(WORK)/runs/tamper_ela/best.keras  ## EER threshold, metrics per type, int8 -> models/tamper_ela.tflite
	$(PY) -m training.tamper.evaluate
$(WORK)/runs/sr_mse/generator.weights.h5:
	$(PY) -m training.sr.train mse --steps $(SR_STEPS) $(SR_SHIP)
	$(PY) -m training.sr.train mse --steps $(SR_RESTART_STEPS)
$(WORK)/runs/sr_mse_decay/generator.weights.h5: | $(WORK)/runs/sr_mse/generator.weights.h5
	$(PY) -m training.sr.train mse $(SR_DECAY)
tamper-evaluate: $(WORK)/tamper/index.csv  ## localisation heat maps (ELA / wavelet / the shipped SR's reconstruction) vs masks
	$(PY) -m training.tamper.localize
tamper-eval: tamper-export tamper-evaluate
# The perceptual variants use the veil classifier as their feature net: built first if missing
# (order-only: a newer veil checkpoint does not retrain SR).
sr-train: | $(WORK)/runs/veil/best.keras  ## the four SR variants
	$(PY) -m training.sr.train mse --steps $(SR_STEPS) $(SR_SHIP)
	$(PY) -m training.sr.train mse --steps $(SR_RESTART_STEPS)
	$(PY) -m training.sr.train mse $(SR_DECAY)
	$(PY) -m training.sr.train perceptual --steps $(SR_VARIANT_STEPS)
	$(PY) -m training.sr.train srgan_mse --steps $(SR_VARIANT_STEPS)
	$(PY) -m training.sr.train srgan_perceptual --steps $(SR_VARIANT_STEPS)
sr-export: | $(WORK)/runs/sr_mse_decay/generator.weights.h5  ## PSNR/SSIM on Set5/Set14/BSD68 vs bicubic, TFLite variants -> models/sr_x4.tflite
	$(PY) -m training.sr.evaluate --run sr_mse_decay
sr-eval: sr-export
# The splice check: SYNTHETIC splices and copy-moves of never-JPEG pictures, tile trees and an image
# stage fitted out of fold (~8 min of features, ~35 min of fitting on the shared CPU; its defaults
# are the shipped run's: 12 images per train picture, reports/tamper_ela/splice/rounds_trial.md)
splice:  ## splice check -> reports/tamper_ela/splice, models/splice_jpeg.npz + manifest entry; then splice-fusion
	$(PY) -m training.tamper.splice
	$(PY) -m training.tamper.splice_fusion
# The splice tile CNN trains where PyTorch and an accelerator are (docs/tamper_sr.md): splice-gpu-bundle
# here, training/tamper/splice_gpu.py there, splice-cnn-import RUN=<its --out> here, then splice-fusion
# (the trees' image cache of `make splice` first) fits the fusion and ships the CNN by its rule.
.PHONY: splice-gpu-bundle splice-cnn-import splice-fusion
splice-gpu-bundle:  ## train pictures (grey) + the PyWavelets wheel for splice_gpu.py -> splice_bundle/
	$(PY) -m training.tamper.splice_cnn --export-gpu-bundle splice_bundle
	$(PY) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 -d splice_bundle PyWavelets==1.10.0
splice-cnn-import:  ## RUN=<the run's --out> -> data/splice/splice_cnn.tflite (refused unless Keras = PyTorch)
	$(PY) -m training.tamper.splice_cnn --import-gpu $(RUN)
splice-fusion:  ## tile CNN + trees fused on validation -> reports/tamper_ela/splice/cnn_trial.*, models/ by its rule
	$(PY) -m training.tamper.splice_fusion
forensics-models: tamper-data tamper-train sr-train sr-export tamper-export tamper-evaluate splice morph  ## all of the above and the morph check
bench-forensics:  ## latency of each forensic model and of the whole pass on a 640x480 capture
	$(PY) bench/bench_forensics.py

# Morph attack detection (docs/tamper_sr.md#morph-detection): SYNTHETIC morphs of real faces
# (faces68, faces68_ytf, CEW eyes_closed_faces, mask without_mask), a small CNN fused with trees
# on face-crop texture features; crops ~12-35 min, the CNN MORPH_MINUTES, features + trees
# ~10 min on the shared CPU. MORPH_LIMIT=N draws N of the 5360 faces (seeded) for a quicker try.
MORPH_LIMIT ?=
# The CNN trains for MORPH_MINUTES (CPU budget, checkpoints in the work dir) into a candidate
# file, MORPH_CNN_FLAGS e.g. "--init RUN/best.weights.h5 --lr 2.5e-4" to go on from earlier
# weights; train compares trees, CNN and their fusion on validation, replaces the release in
# models/ only with a higher validation AUC, and scores test once.
MORPH_MINUTES ?= 85
MORPH_CNN_FLAGS ?=
.PHONY: morph morph-cnn
morph: morph-cnn  ## morph check: data + CNN + trees + fusion -> reports/morph; models/morph.npz, morph_cnn.tflite + manifest if better
	OMP_NUM_THREADS=1 $(PY) -m training.morph.train
morph-cnn: $(WORK)/morph/crops_more.npz  ## the morph CNN alone (training/morph/cnn.py) -> $(WORK)/morph/morph_cnn.tflite
	$(PY) -m training.morph.cnn --minutes $(MORPH_MINUTES) $(MORPH_CNN_FLAGS)
$(WORK)/morph/crops_more.npz: $(foreach d,faces68 faces68_ytf eyes_closed_faces mask,training/splits/$(d).csv) training/morph/data.py
	$(PY) -m training.morph.data $(if $(MORPH_LIMIT),--limit $(MORPH_LIMIT))
