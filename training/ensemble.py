"""Average several trained runs of one task into one network: the mean of their logits.

Runs of one recipe on the same crops land a point or more apart on sources they never saw
(reports/verdicts/ensemble_trial.md); the mean of independent runs' logits keeps less of that
run-to-run variance than any one draw. The result is one Keras model with the layers the exporter
and the kiosk expect (input "pixels", "logit", "score"), so `training.evaluate` exports, quantizes
and judges it as any run and the kiosk runs it as one .tflite file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.paths import WORK
from training.tasks import TASKS, Task
from training.tf_setup import tf

keras = tf.keras
layers = keras.layers


def mean_logit(members: list[keras.Model]) -> keras.Model:
    """One model whose "logit" is the mean of the members' "logit" layers (same input shape)."""
    if len(members) < 2:
        raise ValueError("an average needs at least two runs")
    shapes = {tuple(m.inputs[0].shape[1:]) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"the runs take different inputs: {sorted(shapes)}")
    inputs = keras.Input(shape=shapes.pop(), name="pixels")
    logits = [
        keras.Model(m.inputs, m.get_layer("logit").output, name=f"run{i}")(inputs)
        for i, m in enumerate(members, start=1)
    ]
    logit = layers.Average(name="logit")(logits)
    score = layers.Activation("sigmoid", name="score")(logit)
    return keras.Model(inputs, score, name=f"{members[0].name}_mean{len(members)}")


def average_runs(task: Task, runs: list[Path], run_dir: Path) -> Path:
    """Write the mean of `runs` (run directories of `task`, each with best.keras and
    train_info.json) as `run_dir`/best.keras with a train_info.json naming its members."""
    infos = [json.loads((r / "train_info.json").read_text()) for r in runs]
    if any(info["task"] != task.name for info in infos):
        raise SystemExit(f"every run must be of task {task.name}: {[i['task'] for i in infos]}")
    model = mean_logit([keras.models.load_model(r / "best.keras") for r in runs])
    run_dir.mkdir(parents=True, exist_ok=True)
    best = run_dir / "best.keras"
    model.save(best)
    (run_dir / "train_info.json").write_text(
        json.dumps(
            {
                "task": task.name,
                "seed": ", ".join(str(info["seed"]) for info in infos),
                "epochs_run": max(info["epochs_run"] for info in infos),
                "seconds": round(sum(info["seconds"] for info in infos), 1),
                "parameters": int(model.count_params()),
                "architecture": infos[0].get("architecture", task.architecture),
                "members": [{"run": str(r), **info} for r, info in zip(runs, infos, strict=True)],
            },
            indent=2,
        )
    )
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument(
        "members", type=Path, nargs="+", help="run directories (each: best.keras, train_info.json)"
    )
    parser.add_argument("--runs", type=Path, default=WORK / "runs")
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    print(f"averaged: {average_runs(task, args.members, args.runs / task.name)}")


if __name__ == "__main__":
    main()
