"""Validation of the visual security index on synthetic perceptual encryptions of real faces.

The paper validates against PEID and IVC-SelectEncrypt (encrypted images with subjective scores).
Neither is obtainable here, so this benchmark encrypts real face photos from
../shared/datasets/faces68 with every scheme x strength of kiosk.runtime.privacy.encryption and checks
that the index orders leakage correctly against two references we can compute offline:

* the strength ladder of each scheme (stronger = less should leak): SROCC within each scheme;
* an objective recognition proxy: does the MTCNN detector still find the face on the encrypted
  image (IoU >= 0.5 with its box on the plain image), and how far are dlib's 68 landmarks,
  predicted on the encrypted image inside the plain face box, from the annotated ones (NME,
  normalized by the outer-eye-corner distance).

Baselines: PSNR, SSIM, and our implementations of Mao & Wu's ESS (edge similarity) and LSS
(luminance similarity). The paper's Table 3 ablation (sim_A; +sim_S; +weights; +GS), the
Fourier-Argand vs steerable edge filter and a denser non-local search are reported too. The
export threshold of `kiosk diag export` is derived from the proxy (see ``derive_threshold``).

Run:  nice -n 10 .venv/bin/python bench/privacy_validation.py            (about 10 min, 2 cores)
      .venv/bin/python bench/privacy_validation.py --from-records         (re-analyse only)
Writes reports/privacy/{validation.md, records.json, threshold.json, *.png}.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path

import cv2
import numpy as np
from scipy import stats
from skimage.metrics import structural_similarity

from kiosk.runtime.privacy.encryption import SCHEMES, STRENGTHS, encrypt
from kiosk.runtime.privacy.vsi import ABLATION, VsiParams, ablation, visual_security_index

logger = logging.getLogger("privacy_validation")

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "datasets" / "faces68"
OUT = ROOT / "reports" / "privacy"
BENCH_KEY = hashlib.sha256(b"idkiosk privacy validation key").digest()
FULL = "C4 +GS (full)"
INDICES = (
    "vsi",
    "vsi_steerable",
    "vsi_stride_half",
    "psnr",
    "ssim",
    "ess",
    "lss",
    *ABLATION,
)
RECOVERY_LEAK = 0.5  # landmarks at least halfway from noise-level to plain-level accuracy
CHANCE_SAMPLES = 8  # pure-noise images per face that set the landmark chance level
LEAK_DEFINITION = (
    f"MTCNN finds the face (IoU >= 0.5) or landmark recovery >= {RECOVERY_LEAK} with an error "
    f"below all {CHANCE_SAMPLES} pure-noise trials"
)
MARGIN = 0.05  # export threshold sits this far below the least secure-looking leaking image


# --- Prepare the data -----------------------------------------------------------------------


def read_pts(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = lines.index("{") + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start : start + 68]])


def select_images(count: int, detector) -> list[tuple[str, np.ndarray, np.ndarray, tuple]]:
    """Seeded sample of faces68 crops whose face MTCNN finds on the plain image."""
    with open(DATASET / "index.csv") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])
    random.Random(7).shuffle(rows)
    chosen = []
    for row in rows:
        rgb = cv2.cvtColor(cv2.imread(str(DATASET / row["path"])), cv2.COLOR_BGR2RGB)
        if min(rgb.shape[:2]) < 160:
            continue
        points = read_pts(DATASET / row["pts"])
        faces = detector.detect(rgb)
        truth = (*points.min(axis=0), *points.max(axis=0))
        match = [f for f in faces if iou(f.box, truth) >= 0.3]
        if match:
            chosen.append((row["path"], rgb, points, match[0].box))
        if len(chosen) == count:
            break
    return chosen


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --- Baseline indices -----------------------------------------------------------------------


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _block_view(image: np.ndarray, size: int = 8) -> np.ndarray:
    h, w = (s - s % size for s in image.shape)
    return image[:h, :w].reshape(h // size, size, w // size, size).swapaxes(1, 2)


def _block_edges(gray: np.ndarray, min_magnitude: float = 8.0):
    """Dominant gradient direction (mod pi) per 8x8 block, NaN where the block has no edge."""
    gx = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)
    # Double-angle averaging finds the dominant orientation of a block.
    c = _block_view(gx * gx - gy * gy).sum(axis=(2, 3))
    s = _block_view(2 * gx * gy).sum(axis=(2, 3))
    magnitude = _block_view(np.hypot(gx, gy)).mean(axis=(2, 3))
    angle = 0.5 * np.arctan2(s, c)
    return np.where(magnitude > min_magnitude, angle, np.nan)


def ess(a: np.ndarray, b: np.ndarray) -> float:
    """Edge similarity score (after Mao & Wu 2004): |cos| of block edge-direction differences,
    0 where only one image has an edge, averaged over blocks where either has one."""
    ea, eb = _block_edges(a), _block_edges(b)
    either = ~(np.isnan(ea) & np.isnan(eb))
    both = ~np.isnan(ea) & ~np.isnan(eb)
    weights = np.where(both, np.abs(np.cos(np.nan_to_num(ea - eb))), 0.0)
    return float(weights[either].mean()) if either.any() else 1.0


def lss(a: np.ndarray, b: np.ndarray, alpha: float = 0.1, beta: float = 3.0) -> float:
    """Luminance similarity score (after Mao & Wu 2004) on 8x8 block means: 1 when the means
    differ by less than beta, minus alpha per further beta of difference."""
    diff = np.abs(_block_view(a).mean(axis=(2, 3)) - _block_view(b).mean(axis=(2, 3)))
    score = np.where(diff < beta, 1.0, -alpha * np.ceil((diff - beta) / beta))
    return float(score.mean())


# --- Evaluate -------------------------------------------------------------------------------


def nme(points: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.linalg.norm(points - truth, axis=1).mean() / np.linalg.norm(truth[36] - truth[45])
    )


def evaluate(count: int) -> list[dict]:
    from kiosk.runtime.vision.landmarks import LandmarkPredictor
    from kiosk.runtime.vision.mtcnn_lite import MtcnnLite

    detector = MtcnnLite.from_models_dir(ROOT / "models")
    predictor = LandmarkPredictor.default()
    images = select_images(count, detector)
    logger.info("evaluating %d images x %d schemes x %d strengths", len(images), len(SCHEMES), 5)
    steerable = VsiParams(edge_filter="steerable")
    dense = VsiParams(search_stride=0.5)
    records = []
    rng = np.random.default_rng(7)
    for number, (name, rgb, truth, box) in enumerate(images):
        chance = [
            nme(predictor.predict(rng.integers(0, 256, rgb.shape, np.uint8), box).points, truth)
            for _ in range(CHANCE_SAMPLES)
        ]
        plain_nme = nme(predictor.predict(rgb, box).points, truth)
        plain_gray = luma(rgb)
        for scheme in SCHEMES:
            for strength in STRENGTHS:
                nonce = hashlib.sha256(f"{name}/{scheme}/{strength}".encode()).digest()[:16]
                enc = encrypt(rgb, BENCH_KEY, scheme, strength, nonce=nonce).pixels
                enc_gray = luma(enc)
                faces = [f for f in detector.detect(enc) if iou(f.box, box) >= 0.5]
                record = {
                    "image": name,
                    "scheme": scheme,
                    "strength": strength,
                    "detected": bool(faces),
                    "confidence": max((f.confidence for f in faces), default=0.0),
                    "nme": nme(predictor.predict(enc, box).points, truth),
                    "nme_plain": plain_nme,
                    "nme_chance": chance,
                    "psnr": psnr(plain_gray, enc_gray),
                    "ssim": float(structural_similarity(plain_gray, enc_gray, data_range=255)),
                    "ess": ess(plain_gray, enc_gray),
                    "lss": lss(plain_gray, enc_gray),
                    "vsi_steerable": visual_security_index(rgb, enc, steerable).vsi,
                    "vsi_stride_half": visual_security_index(rgb, enc, dense).vsi,
                }
                variants = ablation(rgb, enc)
                record.update({config: result.vsi for config, result in variants.items()})
                record.update(vsi=variants[FULL].vsi, rd=variants[FULL].rd, gs=variants[FULL].gs)
                records.append(record)
        logger.info("image %d/%d done", number + 1, len(images))
    return records


# --- Analyse --------------------------------------------------------------------------------


def srocc(x, y) -> float:
    """Spearman correlation; 0 when either side is constant (no order to agree with)."""
    if np.ptp(np.asarray(x, float)) == 0 or np.ptp(np.asarray(y, float)) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def landmark_recovery(record: dict) -> float:
    """1 = landmarks as accurate as on the plain image, 0 = no better than on pure noise
    (the median error over CHANCE_SAMPLES noise images in the same face box)."""
    chance = float(np.median(record["nme_chance"]))
    span = chance - record["nme_plain"]
    if span < 0.05:  # the predictor already fails on the plain face: no evidence either way
        return 0.0
    return float(np.clip((chance - record["nme"]) / span, 0.0, 1.0))


def leaks(record: dict) -> bool:
    """Recognition proxy: the detector finds the face, or the landmarks are readable (recovery
    of at least RECOVERY_LEAK *and* better than every pure-noise trial: dlib's error on noise
    varies a lot, so one lucky noise-like result must not count as a leak)."""
    readable = landmark_recovery(record) >= RECOVERY_LEAK
    return record["detected"] or (readable and record["nme"] < min(record["nme_chance"]))


def within_scheme(records: list[dict], index: str) -> dict[str, float]:
    """Mean over images of SROCC(index, -strength) per scheme (+1 = perfect leakage order)."""
    out = {}
    for scheme in SCHEMES:
        rows = [r for r in records if r["scheme"] == scheme]
        per_image = []
        for image in sorted({r["image"] for r in rows}):
            own = [r for r in rows if r["image"] == image]
            per_image.append(srocc([r[index] for r in own], [-r["strength"] for r in own]))
        out[scheme] = float(np.mean(per_image))
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a leaking image scores above a non-leaking one (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def proxy_agreement(records: list[dict], index: str) -> dict[str, float]:
    scores = np.array([r[index] for r in records])
    return {
        "srocc_recovery": srocc(scores, [landmark_recovery(r) for r in records]),
        "srocc_confidence": srocc(scores, [r["confidence"] for r in records]),
        "auc_leak": auc(scores, np.array([leaks(r) for r in records])),
    }


def _threshold_from(records: list[dict]) -> float:
    return round(min(r["vsi"] for r in records if leaks(r)) - MARGIN, 3)


def derive_threshold(records: list[dict]) -> dict:
    """Zero leaks on the validation set, then a safety margin.

    Every encryption the proxy calls leaking (face still detected, or landmarks readable) must
    score above the threshold; it is set MARGIN below the lowest VSI of those, to absorb frames
    unlike these faces. The share of non-leaking encryptions that still pass measures utility.
    The rule is also checked on a split: derived on half of the images, tested on the other half.
    """
    vsi = np.array([r["vsi"] for r in records])
    leak = np.array([leaks(r) for r in records])
    threshold = _threshold_from(records)
    passing = vsi <= threshold
    images = sorted({r["image"] for r in records})
    random.Random(7).shuffle(images)
    calibration = set(images[: len(images) // 2])
    split_threshold = _threshold_from([r for r in records if r["image"] in calibration])
    held_out = [r for r in records if r["image"] not in calibration]
    by_cell = {
        f"{scheme}/{strength}": float(
            np.mean(
                [
                    r["vsi"] <= threshold
                    for r in records
                    if r["scheme"] == scheme and r["strength"] == strength
                ]
            )
        )
        for scheme in SCHEMES
        for strength in STRENGTHS
    }
    return {
        "threshold": threshold,
        "rule": "lowest VSI of any leaking validation encryption minus margin",
        "lowest_leaking_vsi": round(float(vsi[leak].min()), 4),
        "margin": MARGIN,
        "leak_definition": LEAK_DEFINITION,
        "encryptions": len(records),
        "leaking": int(leak.sum()),
        "leaking_passing": int((passing & leak).sum()),
        "non_leaking_passing": int((passing & ~leak).sum()),
        "non_leaking": int((~leak).sum()),
        "split_check": {
            "threshold_from_half": split_threshold,
            "held_out_leaking": sum(leaks(r) for r in held_out),
            "held_out_leaking_passing": sum(
                leaks(r) and r["vsi"] <= split_threshold for r in held_out
            ),
        },
        "pass_rate_by_scheme_strength": by_cell,
    }


# --- Gate calibration on kiosk-sized scenes --------------------------------------------------
#
# The index threshold above comes from 208 px crops. A kiosk exports whole camera frames
# (640x480 .. 12 MP) where per-pixel noise can hide a face from the index at full resolution but
# not from a detector after a blur. So the export gate normalises every pair to
# VsiParams.size before scoring, and its threshold is derived here from frames of every size,
# labelled by an attack on what the gate would release.

SCENE_SIZES = ((640, 480), (1920, 1080), (4000, 3000))
FACE_FRACTION = 0.45  # landmark-box height / frame height: an applicant framed by the kiosk
ATTACK_IOU = 0.3  # a detection this close to the true face box counts as found
GATE_FILE = ROOT / "kiosk" / "privacy" / "gate.json"
OLD_THRESHOLD = 1.252  # the crop-derived gate at native resolution, for the before/after table
# Native scoring costs ~1 min per pair at 1920x1080: the old gate is replayed for strengths 4-5
# (weaker ones never passed it, validation.md) at 640x480, and for xor (issue 10's case) above.
BEFORE_FROM_STRENGTH = 4
# Schemes that cannot reach safety whatever their VSI (kept in kiosk.runtime.privacy.encryption for
# the index validation, never offered for export); the reason is written to gate.json.
UNSAFE_SCHEMES = {
    "block_shuffle": "pixels stay intact; a jigsaw solver reorders the blocks (not modelled by "
    "the detector attack)",
    "thumbnail_leak": "cell means survive: a thumbnail leaks by design",
    "dct_sign": "the magnitude of every 8x8 block mean survives: |x - 127.5| is a 1/8 thumbnail",
    "dct_perm": "every 8x8 block mean (DC) survives: a 1/8 thumbnail, 500x375 px at 12 MP",
}


def scene(rgb: np.ndarray, points: np.ndarray, width: int, height: int):
    """A kiosk frame: the face crop scaled so its landmark box is FACE_FRACTION of the height,
    centred on a light backdrop. Returns the frame and the landmarks in frame pixels."""
    span = points.max(axis=0) - points.min(axis=0)
    scale = FACE_FRACTION * height / span[1]
    crop = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    frame = np.full((height, width, 3), (205, 208, 212), np.uint8)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2 * scale
    x0 = round(width / 2 - centre[0])
    y0 = round(height * 0.45 - centre[1])
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(width, x0 + crop.shape[1]), min(height, y0 + crop.shape[0])
    frame[fy0:fy1, fx0:fx1] = crop[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return frame, points * scale + [x0, y0]


def attack_views(image: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """What an attacker does to undo scrambling noise: look at the frame as released, after a
    light Gaussian blur (sigma 1/400 of the shorter side), and downscaled to a 240 px shorter
    side (area averaging). Each view with its scale relative to the frame."""
    short = min(image.shape[:2])
    sigma = max(1.0, short / 400)
    small = 240 / short
    return {
        "released": (image, 1.0),
        "blur": (cv2.GaussianBlur(image, (0, 0), sigma), 1.0),
        "downscale": (
            cv2.resize(image, None, fx=small, fy=small, interpolation=cv2.INTER_AREA),
            small,
        ),
    }


class Attacker:
    """The kiosk's own MTCNN (LiteRT) and dlib landmarks, run on what the gate releases."""

    def __init__(self) -> None:
        from kiosk.runtime.models.registry import ModelRegistry
        from kiosk.runtime.vision.landmarks import LandmarkPredictor

        self.registry = ModelRegistry(ROOT / "models")
        self.predictor = LandmarkPredictor.default()
        self._detectors: dict[int, object] = {}

    def detector(self, min_face: int):
        """A detector whose pyramid starts near the expected face size (the attacker knows
        how a kiosk frames a face); cached per size so interpreters are built once."""
        from kiosk.config import MtcnnSettings
        from kiosk.runtime.vision.mtcnn_lite import MtcnnLite

        min_face = max(20, int(min_face) // 10 * 10)
        if min_face not in self._detectors:
            settings = MtcnnSettings(min_face_size=min_face)
            self._detectors[min_face] = MtcnnLite(self.registry, settings)
        return self._detectors[min_face]

    def faces(self, image: np.ndarray, face_px: float):
        return self.detector(0.4 * face_px).detect(image)

    def chance(self, shape: tuple, box, truth: np.ndarray, rng) -> dict[str, list[float]]:
        """Landmark error on pure noise per view (the level that means 'nothing readable')."""
        out: dict[str, list[float]] = {}
        for _ in range(4):
            noise = rng.integers(0, 256, shape, np.uint8)
            for view, (image, scale) in attack_views(noise).items():
                points = self.predictor.predict(image, tuple(np.multiply(box, scale))).points
                out.setdefault(view, []).append(nme(points / scale, truth))
        return out

    def attack(self, image: np.ndarray, box, truth: np.ndarray, chance, plain_nme) -> dict:
        """Per view: face found near the true box, and landmark error inside it."""
        face_px = box[3] - box[1]
        result = {}
        for view, (viewed, scale) in attack_views(image).items():
            found = [
                f
                for f in self.faces(viewed, face_px * scale)
                if iou(np.divide(f.box, scale), box) >= ATTACK_IOU
            ]
            points = self.predictor.predict(viewed, tuple(np.multiply(box, scale))).points
            error = nme(points / scale, truth)
            record = {
                "detected": bool(found),
                "confidence": max((f.confidence for f in found), default=0.0),
                "nme": error,
                "nme_plain": plain_nme[view],
                "nme_chance": chance[view],
            }
            record["leak"] = leaks(record)
            result[view] = record
        return result


def gate_cells(width: int) -> list[tuple[str, int]]:
    """Scheme x strength cells evaluated per frame width (the DCT schemes cost ~12 s and
    1.4 GB per encryption at 12 MP; they are unsafe at every size anyway, see UNSAFE_SCHEMES)."""
    schemes = [s for s in SCHEMES if width < 4000 or not s.startswith("dct")]
    return [(scheme, strength) for scheme in schemes for strength in STRENGTHS]


def evaluate_gate(count: int, native_before: int) -> list[dict]:
    """Every scene size x cell: normalised VSI (the new gate), native VSI where affordable (the
    old gate, see BEFORE_FROM_STRENGTH; xor up to ``native_before`` px wide), and the attack."""
    attacker = Attacker()
    plain_detector = attacker.detector(20)
    faces = select_images(count, plain_detector)
    rng = np.random.default_rng(7)
    native = VsiParams(size=None)
    records = []
    for width, height in SCENE_SIZES:
        for name, rgb, points, _ in faces:
            frame, truth = scene(rgb, points, width, height)
            small = 240 / height
            shrunk = cv2.resize(frame, None, fx=small, fy=small, interpolation=cv2.INTER_AREA)
            landmark_box = (*truth.min(axis=0), *truth.max(axis=0))
            found = [
                f.box
                for f in attacker.faces(shrunk, FACE_FRACTION * 240)
                if iou(np.divide(f.box, small), landmark_box) >= ATTACK_IOU
            ]
            if not found:
                logger.info("%dx%d: plain face of %s not detected, skipped", width, height, name)
                continue
            box = tuple(np.divide(found[0], small))
            chance = attacker.chance(frame.shape, box, truth, rng)
            plain_nme = {
                view: nme(
                    attacker.predictor.predict(image, tuple(np.multiply(box, s))).points / s, truth
                )
                for view, (image, s) in attack_views(frame).items()
            }
            for scheme, strength in gate_cells(width):
                nonce = hashlib.sha256(f"{name}/{width}/{scheme}/{strength}".encode()).digest()[:16]
                enc = encrypt(frame, BENCH_KEY, scheme, strength, nonce=nonce).pixels
                record = {
                    "image": name,
                    "size": f"{width}x{height}",
                    "scheme": scheme,
                    "strength": strength,
                    "vsi": visual_security_index(frame, enc).vsi,
                    "vsi_native": (
                        visual_security_index(frame, enc, native).vsi
                        if strength >= BEFORE_FROM_STRENGTH
                        and (width <= 640 or (width <= native_before and scheme == "xor"))
                        else None
                    ),
                    "attack": attacker.attack(enc, box, truth, chance, plain_nme),
                }
                record["leak"] = any(view["leak"] for view in record["attack"].values())
                records.append(record)
            logger.info("%dx%d %s done", width, height, name)
    return records


def derive_gate(records: list[dict], crops: list[dict]) -> dict:
    """Threshold (zero attacked leaks pass, then MARGIN) and the options the export offers.

    The validation's face crops (``crops``, records.json) are at most 208 px, so their VSI is
    already at the normalised size: their leaking encryptions bound the threshold too, and the
    lower of the two bounds is used.

    A scheme/strength is offered only if it is not in UNSAFE_SCHEMES and the attack found the
    face in none of its encryptions at any size: the gate is then a second line of defence,
    never the only one.
    """
    vsi = np.array([r["vsi"] for r in records])
    leak = np.array([r["leak"] for r in records])
    lowest_crop = min((r["vsi"] for r in crops if leaks(r)), default=math.inf)
    lowest = min(float(vsi[leak].min()), lowest_crop)
    threshold = round(lowest - MARGIN, 3)
    options: dict[str, list[int]] = {}
    removed: dict[str, str] = {}
    for scheme in SCHEMES:
        for strength in STRENGTHS:
            own = [r for r in records if (r["scheme"], r["strength"]) == (scheme, strength)]
            cell = f"{scheme}/{strength}"
            if scheme in UNSAFE_SCHEMES:
                removed[cell] = UNSAFE_SCHEMES[scheme]
            elif any(r["leak"] for r in own):
                sizes = sorted({r["size"] for r in own if r["leak"]})
                removed[cell] = f"the attack finds the face at {', '.join(sizes)}"
            elif not any(r["vsi"] <= threshold for r in own):
                removed[cell] = "never passes the gate"
            else:
                options.setdefault(scheme, []).append(strength)
    return {
        "threshold": threshold,
        "vsi_size": VsiParams().size,
        "rule": "lowest normalised VSI of any encryption the attack breaks (kiosk scenes) or "
        "the proxy calls leaking (validation crops), minus margin",
        "lowest_leaking_vsi": round(lowest, 4),
        "lowest_leaking_vsi_scenes": round(float(vsi[leak].min()), 4),
        "lowest_leaking_vsi_crops": round(lowest_crop, 4),
        "margin": MARGIN,
        "attack": "MTCNN (LiteRT) finds a face with IoU >= "
        f"{ATTACK_IOU} to the true box, or dlib landmarks readable ({LEAK_DEFINITION}), on the "
        "released frame, after a Gaussian blur (sigma = shorter side / 400) or after "
        "downscaling to 240 px",
        "sizes": sorted({r["size"] for r in records}),
        "encryptions": len(records),
        "leaking": int(leak.sum()),
        "leaking_passing": int(((vsi <= threshold) & leak).sum()),
        "export_options": options,
        "removed_options": removed,
    }


def gate_report(records: list[dict], gate: dict) -> str:
    """Attack success per scheme/strength/size before (native VSI <= OLD_THRESHOLD) and after."""
    rows = []
    for size in gate["sizes"]:
        for scheme in SCHEMES:
            for strength in STRENGTHS:
                own = [
                    r
                    for r in records
                    if (r["size"], r["scheme"], r["strength"]) == (size, scheme, strength)
                ]
                if not own:
                    continue
                before = [r for r in own if r["vsi_native"] is not None]
                old = [r for r in before if r["vsi_native"] <= OLD_THRESHOLD]
                new = [r for r in own if r["vsi"] <= gate["threshold"]]
                offered = strength in gate["export_options"].get(scheme, [])
                rows.append(
                    [
                        size,
                        scheme,
                        strength,
                        len(own),
                        sum(r["leak"] for r in own),
                        f"{sum(r['leak'] for r in old)}/{len(old)}" if before else "n/a",
                        f"{sum(r['leak'] for r in new)}/{len(new)}",
                        "yes" if offered else "no",
                    ]
                )
    table = _table(
        [
            "size",
            "scheme",
            "strength",
            "frames",
            "attack finds face",
            "before: found / released",
            "after: found / released",
            "offered",
        ],
        rows,
    )
    removed = "\n".join(f"* `{cell}`: {why}" for cell, why in gate["removed_options"].items())
    offered = ", ".join(
        f"`{scheme}` strength {strengths}" for scheme, strengths in gate["export_options"].items()
    )
    return f"""# Export gate: attack on what the gate releases

Generated by `bench/privacy_validation.py --gate`. Scenes: {len({r["image"] for r in records})}
faces of `../shared/datasets/faces68` (the seeded sample of the validation), each scaled so its
landmark box is {FACE_FRACTION:.0%} of the frame height, on a plain backdrop, at
{", ".join(gate["sizes"])}; every scheme x strength ({gate["encryptions"]} encryptions; the DCT
schemes are skipped at 12 MP, see below).

Attack: {gate["attack"]}.

**Before**: the gate scored the frame at native resolution against {OLD_THRESHOLD} (derived on
208 px crops); replayed for strengths {BEFORE_FROM_STRENGTH}-5 at 640x480 and for `xor` at
1920x1080 (native scoring costs ~1 min per pair there; at 12 MP it needed 13.4 GB before the
memory fix), "n/a" elsewhere. **After**: the pair is normalised to a {gate["vsi_size"]} px
shorter side and compared with **{gate["threshold"]}**: the lowest VSI of a broken scene
encryption is {gate["lowest_leaking_vsi_scenes"]}, of a leaking validation crop (`validation.md`,
crops are already under 256 px) {gate["lowest_leaking_vsi_crops"]}; the lower one minus the margin
{gate["margin"]}. {gate["leaking_passing"]} of {gate["leaking"]} broken scene encryptions pass it.

{table}

Offered for export: {offered}. Removed:

{removed}
"""


# --- Report ---------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


LABELS = {
    "vsi": "VSI (Fourier-Argand, full)",
    "vsi_steerable": "VSI, steerable-filter edges",
    "vsi_stride_half": "VSI, search stride l/2",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "ess": "ESS (Mao & Wu)",
    "lss": "LSS (Mao & Wu)",
}


def plots(records: list[dict], threshold: float, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed; skipping plots (pip install matplotlib)")
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for scheme in SCHEMES:
        means = [
            np.mean([r["vsi"] for r in records if (r["scheme"], r["strength"]) == (scheme, k)])
            for k in STRENGTHS
        ]
        stds = [
            np.std([r["vsi"] for r in records if (r["scheme"], r["strength"]) == (scheme, k)])
            for k in STRENGTHS
        ]
        ax.errorbar(STRENGTHS, means, yerr=stds, marker="o", capsize=3, label=scheme)
    ax.axhline(threshold, color="k", linestyle="--", label=f"export threshold {threshold}")
    ax.set(xlabel="strength level", ylabel="VSI (mean +- std over images)", xticks=STRENGTHS)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "vsi_vs_strength.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    vsi = np.array([r["vsi"] for r in records])
    recovery = np.array([landmark_recovery(r) for r in records])
    detected = np.array([r["detected"] for r in records])
    ax.scatter(vsi[~detected], recovery[~detected], s=8, alpha=0.5, label="face not detected")
    ax.scatter(vsi[detected], recovery[detected], s=8, alpha=0.5, label="face detected (MTCNN)")
    ax.axvline(threshold, color="k", linestyle="--", label="export threshold")
    ax.axhline(RECOVERY_LEAK, color="grey", linestyle=":", label="landmarks readable")
    ax.set(xlabel="VSI", ylabel="landmark recovery (1 = as on plain)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "vsi_vs_proxy.png", dpi=120)
    plt.close(fig)
    return ["vsi_vs_strength.png", "vsi_vs_proxy.png"]


def edge_filter_comparison() -> str:
    """Noise robustness and cost of the two edge filters on a 256x256 face and uniform noise."""
    from skimage import data

    from kiosk.runtime.privacy.edges import EDGE_FILTERS, edge_maps

    face = luma(cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA))
    noise = np.random.default_rng(7).integers(0, 256, face.shape).astype(np.float64)
    rows = []
    for name in EDGE_FILTERS:
        face_edges = edge_maps(face, name).binary.mean()
        elapsed = []
        for _ in range(7):
            started = time.perf_counter()
            edge_maps(face, name)
            elapsed.append((time.perf_counter() - started) * 1000)
        elapsed = np.median(elapsed)
        rows.append(
            [name, float(face_edges), float(edge_maps(noise, name).binary.mean()), f"{elapsed:.0f}"]
        )
    return _table(
        ["edge filter", "edge pixels, face", "edge pixels, uniform noise", "median ms (256x256)"],
        rows,
    )


def report(records: list[dict], threshold: dict, out: Path, figures: list[str]) -> str:
    images = sorted({r["image"] for r in records})
    indices = ["vsi", *ABLATION, "vsi_steerable", "vsi_stride_half", "psnr", "ssim", "ess", "lss"]
    label = {**LABELS, **{name: f"ablation {name}" for name in ABLATION}}
    rows = []
    for index in indices:
        per = within_scheme(records, index)
        values = list(per.values())
        rows.append([label[index], *values, float(np.mean(values)), float(np.std(values))])
    order_table = _table(["index", *SCHEMES, "mean", "std"], rows)
    proxy_rows = []
    for index in indices:
        agreement = proxy_agreement(records, index)
        proxy_rows.append([label[index], *agreement.values()])
    proxy_table = _table(
        ["index", "SROCC vs landmark recovery", "SROCC vs MTCNN confidence", "AUC leak"], proxy_rows
    )
    marks = {
        "C1 sim_A": "x | | |",
        "C2 +sim_S": "x | x | |",
        "C3 +w": "x | x | x |",
        FULL: "x | x | x | x",
    }
    ablation_rows = []
    for name in ABLATION:
        per = within_scheme(records, name)
        agreement = proxy_agreement(records, name)
        ablation_rows.append(
            [
                name,
                marks[name],
                float(np.mean(list(per.values()))),
                agreement["srocc_recovery"],
                agreement["auc_leak"],
            ]
        )
    ablation_table = _table(
        [
            "config",
            "sim_A",
            "sim_S",
            "w",
            "GS",
            "mean SROCC vs strength",
            "SROCC vs recovery",
            "AUC leak",
        ],
        ablation_rows,
    )
    cells = []
    for scheme in SCHEMES:
        for strength in STRENGTHS:
            own = [r for r in records if r["scheme"] == scheme and r["strength"] == strength]
            cells.append(
                [
                    scheme,
                    strength,
                    SCHEMES[scheme].levels[strength - 1],
                    float(np.mean([r["vsi"] for r in own])),
                    float(np.mean([r["detected"] for r in own])),
                    float(np.mean([landmark_recovery(r) for r in own])),
                    float(np.mean([leaks(r) for r in own])),
                    threshold["pass_rate_by_scheme_strength"][f"{scheme}/{strength}"],
                ]
            )
    cell_table = _table(
        [
            "scheme",
            "strength",
            "parameter",
            "mean VSI",
            "detected",
            "landmark recovery",
            "leaks",
            "passes gate",
        ],
        cells,
    )
    shuffle_vs_xor = []
    for strength in STRENGTHS:
        pairs = [
            (r["vsi"], x["vsi"])
            for r in records
            for x in records
            if r["scheme"] == "block_shuffle"
            and r["strength"] == strength
            and x["scheme"] == "xor"
            and x["strength"] == 5
            and x["image"] == r["image"]
        ]
        shuffle_vs_xor.append([strength, float(np.mean([a > b for a, b in pairs]))])
    figure_lines = "\n".join(f"![{name}]({name})" for name in figures)
    return f"""# Visual security index: validation on synthetic encryptions

Generated by `bench/privacy_validation.py`. PEID and IVC-SelectEncrypt (the paper's databases
with subjective scores) are not obtainable here: the encrypted images are generated from
{len(images)} real face crops of `../shared/datasets/faces68` (seeded sample, random.Random(7);
listed in `records.json`) with every scheme x strength of `kiosk.runtime.privacy.encryption`
({len(records)} encryptions). Ground truth is therefore (a) the strength ladder of each scheme
and (b) an objective recognition proxy (MTCNN detection on the encrypted image; dlib landmark
error inside the plain face box, as recovery between pure noise = 0 and the plain image = 1),
not human opinion scores.

## Leakage order within each scheme (mean over images of SROCC(index, -strength))

+1 means the index falls exactly as the strength rises.

{order_table}

## Agreement with the recognition proxy (all encryptions pooled)

A leak is: {LEAK_DEFINITION} (IoU with the face box on the plain image).
AUC = probability that a leaking encryption scores higher than a non-leaking one.

{proxy_table}

## Ablation (paper Table 3)

{ablation_table}

## Edge filter: Fourier-Argand vs steerable

Binary edge density (after the 0.5 threshold and thinning) on astronaut (256x256) and on uniform
8-bit noise; both filters share the across-edge scale (sigma 2 px) and the grey-level calibration.

{edge_filter_comparison()}

## Per scheme and strength

{cell_table}

Non-local property: share of images whose block-shuffled encryption scores above the same
image's full-strength XOR (noise), per shuffle strength:
{_table(["block_shuffle strength", "VSI(shuffle) > VSI(xor 5)"], shuffle_vs_xor)}

## Export threshold

Rule: {threshold["rule"]} ({threshold["leak_definition"]}).
Lowest leaking VSI {threshold["lowest_leaking_vsi"]}, margin {threshold["margin"]} ->
**threshold {threshold["threshold"]}**. Leaking encryptions passing: {threshold["leaking_passing"]}
of {threshold["leaking"]}; non-leaking encryptions passing: {threshold["non_leaking_passing"]} of
{threshold["non_leaking"]}.
Split check: derived on half of the images the rule gives
{threshold["split_check"]["threshold_from_half"]}; on the other half
{threshold["split_check"]["held_out_leaking_passing"]} of
{threshold["split_check"]["held_out_leaking"]} leaking encryptions would pass it.

{figure_lines}
"""


def calibrate_gate(args: argparse.Namespace) -> int:
    records_path = args.out / "gate_records.json"
    if args.from_records:
        records = json.loads(records_path.read_text())
    else:
        started = time.time()
        records = evaluate_gate(args.images, args.native_before)
        logger.info("gate evaluated in %.0f s", time.time() - started)
        records_path.write_text(json.dumps(records, separators=(",", ":")))
    crops_path = args.out / "records.json"
    crops = json.loads(crops_path.read_text()) if crops_path.exists() else []
    gate = derive_gate(records, crops)
    GATE_FILE.write_text(json.dumps(gate, indent=1) + "\n")
    (args.out / "gate.md").write_text(gate_report(records, gate))
    logger.info("gate threshold %.3f written to %s", gate["threshold"], GATE_FILE)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="number of face images")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--from-records", action="store_true", help="re-analyse records.json")
    parser.add_argument(
        "--gate", action="store_true", help=f"calibrate the export gate, write {GATE_FILE.name}"
    )
    parser.add_argument(
        "--native-before", type=int, default=1920, help="widest frame scored natively (before)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gate:
        return calibrate_gate(args)
    records_path = args.out / "records.json"
    if args.from_records:
        records = json.loads(records_path.read_text())
    else:
        started = time.time()
        records = evaluate(args.images)
        logger.info("evaluated in %.0f s", time.time() - started)
        records_path.write_text(json.dumps(records, separators=(",", ":")))
    threshold = derive_threshold(records)
    (args.out / "threshold.json").write_text(json.dumps(threshold, indent=1))
    figures = plots(records, threshold["threshold"], args.out)
    (args.out / "validation.md").write_text(report(records, threshold, args.out, figures))
    logger.info("threshold %.3f; report in %s", threshold["threshold"], args.out / "validation.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
