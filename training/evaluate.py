"""Evaluate, export and register one trained classifier.

1. Export the best checkpoint to float32 and int8 TFLite (training.export).
2. Score the validation and test splits with both files through the kiosk's own classifier code.
3. Threshold = the EER point (FNR ~ FPR) of the int8 model on the *validation* split; the test
   split, never used for training or model selection, reports EER, AUC and FNR/FPR/recall/precision
   at that threshold, per data source too.
4. Baselines on the same test crops: landmark geometry (eye aspect ratio; inner-lip gap over
   eye-to-chin distance), with their own EER.
5. DET and precision-recall curves (PNG) and a markdown report in reports/<model>/; the int8 file
   is copied to models/ and its manifest entry written (file, sha256, threshold, metrics, data).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from kiosk.contract.manifest import write_entry
from kiosk.runtime.models.tflite_io import BinaryClassifier
from training import metrics
from training.export import export_variants
from training.paths import MODELS, REPORTS, WORK
from training.tasks import TASKS, Task
from training.tf_setup import tf
from training.timing import median_ms
from training.train import load_split

PAPER = {  # Mazandarani et al., operating points (FNR %, FPR %)
    "eyes_closed": (2.12, 2.58),
    "mouth_open": (5.12, 5.68),
    "veil": (4.21, 4.68),
}
BASELINE_NAMES = {
    "eyes_closed": "eye aspect ratio (negated)",
    "mouth_open": "inner-lip gap / eye-chin",
}


def tflite_scores(path: Path, images: np.ndarray) -> np.ndarray:
    classifier = BinaryClassifier(path.read_bytes())
    return np.array([classifier.score(image) for image in images], np.float32)


def latency_ms(path: Path, image: np.ndarray, runs: int = 1000) -> float:
    classifier = BinaryClassifier(path.read_bytes(), num_threads=1)
    return median_ms(lambda: classifier.logit(image), runs, warmup=20)


def plot_curves(
    out: Path,
    task: Task,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    threshold_point: tuple[float, float] | None,
) -> None:
    fig, (det_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.8))
    ticks = np.array([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    for name, (labels, scores) in curves.items():
        _, fpr, fnr = metrics.det_curve(labels, scores)
        clip = lambda v: norm.ppf(np.clip(v, 5e-4, 0.5))  # noqa: E731
        det_ax.plot(clip(fpr), clip(fnr), label=name)
        precision, recall = metrics.pr_curve(labels, scores)
        pr_ax.plot(recall, precision, label=name)
    if threshold_point:
        det_ax.plot(*norm.ppf(np.clip(threshold_point, 5e-4, 0.5)), "ko", label="operating point")
    paper = PAPER[task.model_name]
    det_ax.plot(norm.ppf(paper[1] / 100), norm.ppf(paper[0] / 100), "r*", ms=10, label="paper")
    det_ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks], rotation=45)
    det_ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    det_ax.set(
        xlabel="false positive rate (compliant flagged)",
        ylabel=f"false negative rate ({task.positive} missed)",
        title=f"DET - {task.model_name}",
    )
    det_ax.grid(alpha=0.3)
    det_ax.legend(fontsize=8)
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall - {task.model_name}")
    pr_ax.grid(alpha=0.3)
    pr_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def evaluate(
    task: Task,
    run_dir: Path,
    crops_dir: Path,
    reports_dir: Path,
    models_dir: Path,
    latency_runs: int = 1000,
) -> dict:
    model = tf.keras.models.load_model(run_dir / "best.keras")
    crops = crops_dir / f"{task.name}.npz"
    train_split, val, test = (load_split(crops, s) for s in ("train", "val", "test"))
    rng = np.random.default_rng(7)
    calibration = train_split["images"][rng.permutation(len(train_split["labels"]))[:300]]
    paths = export_variants(model, calibration, run_dir / task.model_name)

    scores = {
        name: {
            split: tflite_scores(path, data["images"])
            for split, data in (("val", val), ("test", test))
        }
        for name, path in paths.items()
    }
    val_eer, val_point = metrics.eer_point(val["labels"], scores["int8"]["val"])
    threshold = val_point.threshold
    results = {
        variant: metrics.summary(test["labels"], scores[variant]["test"], threshold)
        for variant in paths
    }
    results["int8_vs_float_mean_abs_score_diff"] = round(
        float(np.mean(np.abs(scores["int8"]["test"] - scores["float32"]["test"]))), 6
    )
    by_source = {}
    for source in sorted(set(test["sources"])):
        keep = test["sources"] == source
        by_source[source] = metrics.summary(
            test["labels"][keep], scores["int8"]["test"][keep], threshold
        )
    curves = {"CNN int8 (test)": (test["labels"], scores["int8"]["test"])}
    baseline = None
    has_baseline = np.isfinite(test["baseline"])
    if has_baseline.any() and len(np.unique(test["labels"][has_baseline])) == 2:
        labels_b = test["labels"][has_baseline]
        _, base_point = metrics.eer_point(labels_b, test["baseline"][has_baseline])
        cnn_same = metrics.summary(labels_b, scores["int8"]["test"][has_baseline], threshold)
        baseline = {
            "name": BASELINE_NAMES.get(task.model_name, "landmark geometry"),
            "subset": "test crops cut from whole faces (landmarks available)",
            "baseline": metrics.summary(
                labels_b, test["baseline"][has_baseline], base_point.threshold
            ),
            "cnn_int8_same_crops": cnn_same,
        }
        curves[f"baseline: {baseline['name']}"] = (labels_b, test["baseline"][has_baseline])
        curves["CNN int8 on the same crops"] = (labels_b, scores["int8"]["test"][has_baseline])
    point = metrics.at_threshold(test["labels"], scores["int8"]["test"], threshold)

    out = reports_dir / task.model_name
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(out / "det_pr.png", task, curves, (point.fpr, point.fnr))
    sample = test["images"][0]
    info = json.loads((run_dir / "train_info.json").read_text())
    members = info.get("members", [])
    # the network trained (`training.train --architecture` may differ from the spec's)
    architecture = info.get("architecture", task.architecture) + (
        f", mean logit of {len(members)} runs" if members else ""
    )  # training/ensemble.py
    report = {
        "model": task.model_name,
        "architecture": architecture,
        "input": [task.size, task.size, 1],
        "positive": task.positive,
        "threshold": threshold,
        "threshold_source": "EER point of the int8 model on the validation split",
        "validation_eer": round(float(val_eer), 5),
        "test": results,
        "test_by_source": by_source,
        "baseline": baseline,
        "sizes_bytes": {name: path.stat().st_size for name, path in paths.items()},
        "latency_ms_median_1thread": {
            name: round(latency_ms(path, sample, latency_runs), 4) for name, path in paths.items()
        },
        "splits": {
            s: {"n": len(d["labels"]), "positives": int(d["labels"].sum())}
            for s, d in (("train", train_split), ("val", val), ("test", test))
        },
        "training": info,
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    (out / "README.md").write_text(render_markdown(task, report))

    models_dir.mkdir(parents=True, exist_ok=True)
    shipped = models_dir / f"{task.model_name}.tflite"
    shutil.copyfile(paths["int8"], shipped)
    write_entry(
        models_dir,
        task.model_name,
        shipped,
        **{**task.spec.entry_fields(), "architecture": architecture},
        quantization="int8 (full integer, representative dataset of 300 training crops)",
        threshold=threshold,
        metrics={"test_int8": results["int8"], "validation_eer": report["validation_eer"]},
        provenance=DATA_PROVENANCE[task.name],
    )
    return report


DATA_PROVENANCE = {
    "eyes": "eye crops cut by the kiosk pipeline from whole faces: faces68/ (300-W AFW + HELEN, "
    "non-commercial research; labelled from the manual landmarks' eye aspect ratio), "
    "eyes_closed_faces/ (CEW ClosedFace, research use; closed) and mask/without_mask "
    "(chandrikadeb7/Face-Mask-Detection, MIT; eyes as reviewed by eye, unclear left out), "
    "train splits; + eyes/ close-ups "
    "(purnenduvashistha/Eye-State-Detection, no licence stated); faces68_ytf/ held out",
    "mouth": "mouth/ (fantopop/smile-detection, MIT; HELEN pictures) hand labels + mouth crops cut "
    "from faces68/ (300-W, non-commercial research) labelled by OFIQ's mouth-opening rule on the "
    "manual landmarks (faces68_measures)",
    "veil": "mask/ (chandrikadeb7/Face-Mask-Detection, MIT; third-party pictures) real masks + "
    "synthetic masks/cloth on clean faces of faces68/, mouth/ and mask/without_mask "
    "(overlays: mask_overlays/, no licence stated)",
}


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def render_markdown(task: Task, r: dict) -> str:
    int8, f32 = r["test"]["int8"], r["test"]["float32"]
    paper = PAPER[task.model_name]
    lines = [
        f"# {task.model_name} — {r['architecture']}, {task.size}x{task.size} grayscale",
        "",
        f"Positive class: **{task.positive}**. Threshold **{r['threshold']:.4f}** = {r['threshold_source']}"
        f" (validation EER {_pct(r['validation_eer'])}). All numbers below are on the held-out test split.",
        "",
        "| model | AUC | EER | FNR @ thr | FPR @ thr | recall | precision | size | latency (1 thread) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("int8 (shipped)", int8), ("float32", f32)):
        key = "int8" if name.startswith("int8") else "float32"
        lines.append(
            f"| {name} | {m['auc']:.4f} | {_pct(m['eer'])} | {_pct(m['at_threshold_fnr'])} | "
            f"{_pct(m['at_threshold_fpr'])} | {_pct(m['at_threshold_recall'])} | "
            f"{_pct(m['at_threshold_precision'])} | {r['sizes_bytes'][key] / 1024:.0f} KiB | "
            f"{r['latency_ms_median_1thread'][key]:.3f} ms |"
        )
    lines += [
        f"| paper (Mazandarani et al.) | | | {paper[0]:.2f} % | {paper[1]:.2f} % | | | | |",
        "",
        f"int8 vs float32: mean |score difference| {r['test']['int8_vs_float_mean_abs_score_diff']:.4f}.",
        "",
        "## By data source (int8, test split)",
        "",
        "| source | n | positives | AUC | EER | FNR @ thr | FPR @ thr |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, m in r["test_by_source"].items():
        auc = "—" if np.isnan(m["auc"]) else f"{m['auc']:.4f}"
        eer = "—" if np.isnan(m["eer"]) else _pct(m["eer"])
        fnr = "—" if m["positives"] == 0 else _pct(m["at_threshold_fnr"])
        fpr = "—" if m["positives"] == m["n"] else _pct(m["at_threshold_fpr"])
        lines.append(f"| {source} | {m['n']} | {m['positives']} | {auc} | {eer} | {fnr} | {fpr} |")
    if r["baseline"]:
        b = r["baseline"]
        lines += [
            "",
            f"## Baseline: {b['name']} ({b['subset']})",
            "",
            "| method | n | AUC | EER |",
            "|---|---|---|---|",
            f"| landmark baseline | {b['baseline']['n']} | {b['baseline']['auc']:.4f} | {_pct(b['baseline']['eer'])} |",
            f"| CNN int8 | {b['cnn_int8_same_crops']['n']} | {b['cnn_int8_same_crops']['auc']:.4f} | "
            f"{_pct(b['cnn_int8_same_crops']['eer'])} |",
        ]
    s = r["splits"]
    t = r["training"]
    averaged = (
        f"; weights: moving average, momentum {t['ema_momentum']}" if t.get("ema_momentum") else ""
    )
    trained = (
        f"{t['parameters']:,} parameters; {t['epochs_run']} epochs in {t['seconds']:.0f} s on the "
        f"CPU; seed {t['seed']}{averaged}."
    )
    if t.get("members"):
        trained = (
            f"The mean logit of {len(t['members'])} runs ({t['parameters']:,} parameters in all; "
            f"seeds {t['seed']}), each {t['members'][0]['parameters']:,} parameters and up to "
            f"{t['epochs_run']} epochs; {t['seconds']:.0f} s of CPU training in all."
        )
    lines += [
        "",
        "![DET and precision-recall](det_pr.png)",
        "",
        "## Data and training",
        "",
        f"Splits (crops / positives): train {s['train']['n']}/{s['train']['positives']}, "
        f"validation {s['val']['n']}/{s['val']['positives']}, test {s['test']['n']}/{s['test']['positives']}; "
        "split by photo (HELEN photo id across datasets), see training/collect.py.",
        trained,
        "",
        f"Data: {DATA_PROVENANCE[task.name]}.",
        "",
        "These are crop-level figures at the export's threshold. The shipped threshold, fusion "
        "and per-face, per-source, end-to-end figures on sources never used in training are in "
        "reports/verdicts/ (`make verdicts`, docs/verdicts.md).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate, export and register a classifier.")
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--crops", type=Path, default=WORK / "crops")
    parser.add_argument("--runs", type=Path, default=WORK / "runs")
    parser.add_argument("--reports", type=Path, default=REPORTS)
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    parser.add_argument("--latency-runs", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    task = TASKS[args.task]
    report = evaluate(
        task, args.runs / task.name, args.crops, args.reports, args.models_dir, args.latency_runs
    )
    int8 = report["test"]["int8"]
    print(
        f"{task.model_name}: threshold {report['threshold']:.4f}, test EER {_pct(int8['eer'])}, "
        f"FNR {_pct(int8['at_threshold_fnr'])}, FPR {_pct(int8['at_threshold_fpr'])}, AUC {int8['auc']:.4f}"
    )


if __name__ == "__main__":
    main()
