"""Every fact about a model that training and the kiosk must agree on, in one place.

Training cuts its crops and exports its manifest entries from these specs; the kiosk cuts the same
crops and refuses, at load, a model whose input does not match its spec (a bundle that would fail
on every frame is refused up front instead of being reported healthy). Stdlib only: this module is
the leaf every layer may import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.contract import reasons

# What the compliance classifiers take and give (training/export.py, kiosk/runtime/models/tflite_io.py).
GRAY_UINT8 = "uint8 grayscale pixels 0..255"
INT8_LOGIT = "int8 logit; score = sigmoid(logit)"
DET_THRESHOLD = "validation DET curve of pipeline crops (training/evaluate.py)"


@dataclass(frozen=True)
class RegionSpec:
    """A square grayscale crop, rotated so the eye line is horizontal (kiosk/runtime/vision/regions.py)."""

    name: str
    size: int  # output side, px
    margin: float  # crop side = margin x the anchor's length
    anchor: str  # what the crop is centred on and what its side is measured from


EYE = RegionSpec(
    "eye",
    56,
    1.6,
    "the eye's six points; length = corner-to-corner eye width (the framing of the eye "
    "close-ups used in training: the eye spans ~60 % of the crop)",
)
MOUTH = RegionSpec("mouth", 72, 1.5, "the 20 lip points; length = corner-to-corner mouth width")
FACE = RegionSpec(
    "face",
    128,
    1.1,
    "the detector box centre; length = the box's longer side (a mask hides the jaw and lips "
    "that dlib would otherwise have to guess)",
)


@dataclass(frozen=True)
class ModelSpec:
    """One model: its manifest name, role and input. Compliance classifiers also name their
    region, the reason code a failure gives, and where their threshold comes from."""

    name: str
    kind: str  # "compliance", "forensic", "detector" or "landmarks"
    architecture: str
    input_shape: tuple[int, ...]  # -1: any size (fully convolutional)
    region: RegionSpec | None = None
    reason: str | None = None
    positive: str = ""  # what a score of 1 means
    input: str = ""
    output: str = ""
    threshold_source: str = ""
    # Preprocessing a model is trained with; its export records them in the manifest entry,
    # which is what the kiosk then applies (never a user setting).
    preprocessing: tuple[tuple[str, float], ...] = ()

    def parameter(self, name: str) -> float:
        """A preprocessing default of this model's training (e.g. tamper_ela's ELA quality)."""
        return dict(self.preprocessing)[name]

    def entry_fields(self) -> dict[str, Any]:
        """What an export repeats of this spec in the model's manifest entry."""
        return {
            "architecture": self.architecture,
            "input_shape": list(self.input_shape),
            "input": self.input,
            "output": self.output,
            "positive": self.positive,
        }

    def shape_problem(self, shape: tuple[int, ...] | list[int]) -> str | None:
        """Why a model with input `shape` cannot serve this spec; None if it can."""
        shape = tuple(int(v) for v in shape)
        expected = self.input_shape
        if len(shape) != len(expected) or any(
            want != -1 and got not in (want, -1) for got, want in zip(shape, expected, strict=True)
        ):
            return f"model {self.name!r} takes input {list(shape)}, its spec says {list(expected)}"
        return None


def _classifier(
    name: str, region: RegionSpec, reason: str, architecture: str, positive: str
) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind="compliance",
        architecture=architecture,
        input_shape=(1, region.size, region.size, 1),
        region=region,
        reason=reason,
        positive=positive,
        input=GRAY_UINT8,
        output=INT8_LOGIT,
        threshold_source=DET_THRESHOLD,
    )


# The compliance classifiers in the order their scores are reported.
COMPLIANCE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _classifier("eyes_closed", EYE, reasons.EYES_CLOSED, "SqueezeMiniVGG", "eye closed"),
        _classifier("mouth_open", MOUTH, reasons.MOUTH_OPEN, "SqueezeMiniVGG", "mouth open"),
        _classifier("veil", FACE, reasons.FACE_COVERED, "SqueezeVGG", "face covered"),
    )
}

OTHER: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mtcnn_pnet", "detector", "MTCNN PNET (Zhang et al. 2016)", (1, -1, -1, 3)),
        ModelSpec("mtcnn_rnet", "detector", "MTCNN RNET (Zhang et al. 2016)", (1, 24, 24, 3)),
        ModelSpec("mtcnn_onet", "detector", "MTCNN ONET (Zhang et al. 2016)", (1, 48, 48, 3)),
        ModelSpec(
            "yunet",
            "detector",
            "YuNet (Wu et al. 2023), OpenCV Zoo face_detection_yunet_2023mar",
            (1, 3, -1, -1),
            input="BGR uint8 frame, any size (cv2.FaceDetectorYN)",
            output="per face: box x, y, w, h, 5 keypoints, score",
        ),
        ModelSpec(
            "blazeface_short",
            "detector",
            "BlazeFace (Bazarevsky et al. 2019), MediaPipe face_detection_short_range",
            (1, 128, 128, 3),
            input="RGB frame letterboxed to 128x128, float32 in [-1, 1]",
            output="896 anchors: box centre/size + 6 keypoints, 1 logit "
            "(kiosk/runtime/vision/blazeface.py)",
        ),
        ModelSpec(
            "blazeface_full",
            "detector",
            "BlazeFace (Bazarevsky et al. 2019), MediaPipe face_detection_full_range",
            (1, 192, 192, 3),
            input="RGB frame letterboxed to 192x192, float32 in [-1, 1]",
            output="2304 anchors: box centre/size + 6 keypoints, 1 logit "
            "(kiosk/runtime/vision/blazeface.py)",
        ),
        ModelSpec(
            "jpeg_history",
            "forensic",
            "kv JPEG detector (hardened), training/jpeg/nets.py",
            (1, 64, 64, 1),
            positive="JPEG history (plain JPEG, dithered F1/F2 or GAN-laundered)",
            input="uint8 grayscale (ITU-R 601 luma) patch 0..255",
            output=INT8_LOGIT,
            threshold_source="2 % validation false alarms (training/jpeg/export.py)",
        ),
        ModelSpec(
            "tamper_ela",
            "forensic",
            "ElaNet (stride-2 stem, 3 conv-BN-ReLU-pool blocks 32-64-64, global average+max "
            "pool, one logit; 2 input channels), training/tamper/train.py",
            (1, 128, 128, 2),
            output=INT8_LOGIT,
            threshold_source="validation EER (training/tamper/evaluate.py)",
            preprocessing=(("ela_quality", 90),),
        ),
        ModelSpec(
            "splice_jpeg",
            "forensic",
            "gradient-boosted trees on JPEG-ghost, grid-phase blocking, quantisation-comb and "
            "noise tile features, then logistic regression on pooled region features of the tile "
            "map, training/tamper/splice.py",
            (),
            positive="32-px tile pasted with another compression history (splice, copy-move)",
            input="uint8 luma plane; features per 32-px tile "
            "(kiosk/runtime/forensics/splice_features.py)",
            output="P(spliced) per tile; image score: a second stage over the tile map's regions",
            threshold_source="5 % false alarms on validation authentic images",
        ),
        ModelSpec(
            "splice_cnn",
            "forensic",
            "SpliceTileCnn (scaled luma beside 3 fixed SRM high-pass residuals, 6 conv-ReLU "
            "layers 16-24-32-32-48-64, four of stride 2, batch norms folded; global average "
            "pool, one logit), trained in PyTorch by training/tamper/splice_gpu.py",
            (64, 64, 64, 1),
            positive="32-px tile pasted with another compression history (splice, copy-move)",
            input="a fixed batch of 64 patches: each 32-px tile of the luma plane with 16 px of "
            "context (reflected at the border), pixel values 0-255",
            output="logit per patch; the tile map's pooled logits are fused with the splice "
            "trees' image logit by the entry's `fusion` weights (kiosk/runtime/forensics/"
            "splice.py)",
            threshold_source="5 % false alarms of the fused score on validation authentic images",
        ),
        ModelSpec(
            "morph",
            "forensic",
            "gradient-boosted trees on noise-residual, LBP, spectrum and colour-noise features "
            "of the face crop, training/morph/train.py",
            (),
            positive="the face is a morph of two people (synthetic landmark morphs in training)",
            input="RGB face crop from the detector box, 128x128 (kiosk/runtime/forensics/morph.py)",
            output="P(morph) of the face",
            threshold_source="10 % BPCER on validation bona fide faces",
        ),
        ModelSpec(
            "morph_cnn",
            "forensic",
            "MorphCNN (fixed Laplacian residual beside RGB, 2x2 space-to-depth, 8 conv-BN-ReLU "
            "layers 32-32-64-64-96-96-128-128, a max-pool after every second, 1x1 conv head, "
            "global average pool; one logit), training/morph/cnn.py",
            (1, 128, 128, 3),
            positive="the face is a morph of two people (synthetic landmark morphs in training)",
            input="RGB face crop from the detector box, 128x128, pixel values 0-255 (the morph "
            "trees' crop)",
            output="logit; fused with the morph trees' logit by the entry's `fusion` "
            "weights into P(morph) (kiosk/runtime/forensics/morph.py)",
            threshold_source="10 % BPCER of the fused score on validation bona fide faces",
            # Test-time augmentation: the CNN's logit is the mean over the crop and, with
            # tta_mirror 1, its mirror, each also shifted by +-tta_shift_px px in x and in y
            # (reflected border); 10 views here. The fusion is fitted on that mean, so the export
            # records both in the entry and the kiosk applies the entry's (absent: the crop alone).
            preprocessing=(("tta_mirror", 1), ("tta_shift_px", 2)),
        ),
        ModelSpec(
            "sr_x4",
            "forensic",
            "x4 super-resolution generator",
            (1, 128, 128, 1),
            input="float32 Y (BT.601 studio range) / 255",
            output="float32 Y / 255 at 4x the input side",
            # Geometric self-ensemble: the output is the mean of self_ensemble passes over the
            # first n of kiosk/runtime/forensics/sr.py's TRANSFORMS of the input (mirror, half
            # turn, quarter turns), each mapped back; n inferences per face. 1: one plain pass.
            # Four passes gained 0.096 dB on the SR validation photos for 4x the time, which a
            # Pi pays at every capture's SR check and again in the token photo's (twice);
            # reports/sr/decay_ensemble_trial.md. The export scores with it and records it in
            # the entry, and the kiosk applies the entry's (absent: one plain pass).
            preprocessing=(("self_ensemble", 1),),
        ),
        *(
            ModelSpec(
                f"shape_predictor_{backend}",
                "landmarks",
                "dlib 68-point shape predictor",
                (),
                input="grayscale (or RGB) uint8 image and the detector's box",
                output="68 (x, y) points in whole pixels",
            )
            for backend in ("mtcnn", "yunet")
        ),
    )
}

# The arrays of a shape predictor exported from dlib's .dat (training/landmarks_export.py) and
# evaluated by kiosk/runtime/vision/forest.py: C cascades of T trees with S = 2**depth - 1 splits
# and S + 1 leaves over P points, F feature pixels per cascade.
LANDMARK_ARRAYS = (
    "initial_shape",  # (P, 2) float32: the mean shape in the unit box
    "anchors",  # (C, F) int: the point each feature pixel is placed from
    "deltas",  # (C, F, 2) float32: its offset from that point in the mean shape
    "splits",  # (C, T, S, 2) int: the two feature pixels each split compares
    "thresholds",  # (C, T, S) float32: the split goes left when pixel 1 - pixel 2 > this
    "leaves",  # (C, T, S + 1, 2P) float32: the shape increment of each leaf
)
LANDMARK_ARRAYS_QUANTIZATION = "none (dlib's trees as float32 arrays, .npz)"

SPECS: dict[str, ModelSpec] = {**COMPLIANCE, **OTHER}


def landmark_model_name(backend: str) -> str:
    """The landmark model trained on the boxes of detector `backend` (training/landmarks.py
    --detector): the paper pairs a shape predictor with the detector whose boxes it starts from."""
    return f"shape_predictor_{backend}"


def spec(name: str) -> ModelSpec:
    """The spec of a model by its manifest name; KeyError names the known ones."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"no model spec {name!r}; known: {', '.join(sorted(SPECS))}") from None
