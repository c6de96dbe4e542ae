"""Train the splice check's noise-residual tile CNN on an accelerator (PyTorch, no TensorFlow).

    pip install --no-index --no-deps --target /tmp/site splice_bundle/*.whl   # PyWavelets
    PYTHONPATH=/tmp/site:$PWD python3 training/tamper/splice_gpu.py --data-root \
        splice_bundle/data --out OUT --minutes 8 [--init RUN/splice_cnn_keras.npz --host-resample]

Made for the lent H200 (PyTorch, no TensorFlow): `make splice-gpu-bundle` writes the *train*
pictures (grey, as the generator reads them) to splice_bundle/. The run draws fresh images
without end from those pictures with the project's own generator (training/tamper/splice.py:
the same host and donor histories, pastes, copy-moves and final saves as the tree model's
data), in worker processes, until its time budget is spent. Each 32-px tile of an image (on
the grid from the origin, as the trees' tiles) is cut with 16 px of context (64x64, reflected at
the image border: `kiosk.runtime.forensics.splice_features.tile_patches`) and labelled as the trees'
tiles are: spliced if >= 50 % of it is pasted, authentic if none of it is, left out between.

The net (`SpliceCnn`) sees the scaled pixels and three fixed high-pass residuals (SRM filters),
then conv-BN-ReLU layers, four of them of stride 2, global average pooling and a logit. Padding
is TensorFlow's "same" (stride 2: one pixel after, none before), so the Keras copy
(training/tamper/splice_cnn.py) computes the same function. At the end the batch norms are
folded into the convolutions and the weights are written in Keras layout (splice_cnn_keras.npz)
with probe patches and their logits, which the import checks (and the unfolded PyTorch
state as `torch_*`, which `--init` starts a later run from). No checkpoint is chosen: the final
weights are the run's, and no validation or test picture travels. `--host-resample` lets hosts
be resampled too (the second run, withdrawn: reports/tamper_ela/splice/cnn_v2_trial.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from kiosk.runtime.forensics.splice_features import CNN_CONTEXT, TILE
from training.highpass import srm_filters
from training.tamper.splice import CNN_LAYERS as LAYERS
from training.tamper.splice import labelled_tiles, make_sample, pictures

SRM_GAIN = 4.0  # residuals are a few % of the scaled pixel range
BN_EPS = 1e-5


def _same(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's "same" padding of a 3x3 conv on an even-sized input."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class SpliceCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("srm", torch.from_numpy(srm_filters() * SRM_GAIN)[:, None])
        channels = 4
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _, out, _ in LAYERS:
            self.convs.append(nn.Conv2d(channels, out, 3, bias=False))
            self.norms.append(nn.BatchNorm2d(out, eps=BN_EPS))
            channels = out
        self.head = nn.Linear(channels, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) pixel values 0..255 -> (N,) logits."""
        x = pixels / 64.0 - 2.0
        x = torch.cat([x, F.conv2d(F.pad(x, (2, 2, 2, 2)), self.srm)], 1)
        for (_, _, stride), conv, norm in zip(LAYERS, self.convs, self.norms, strict=True):
            x = F.relu(norm(F.conv2d(_same(x, stride), conv.weight, stride=stride)))
        return self.head(x.mean((2, 3)))[:, 0]

    def keras_weights(self) -> dict[str, np.ndarray]:
        """Batch norms folded into the convolutions, kernels as Keras HWIO."""
        out = {"srm": self.srm.detach().cpu().numpy().transpose(2, 3, 1, 0)}
        for (name, _, _), conv, norm in zip(LAYERS, self.convs, self.norms, strict=True):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            kernel = conv.weight * scale[:, None, None, None]
            bias = norm.bias - norm.running_mean * scale
            out[f"{name}_kernel"] = kernel.detach().cpu().numpy().transpose(2, 3, 1, 0)
            out[f"{name}_bias"] = bias.detach().cpu().numpy()
        out["logit_kernel"] = self.head.weight.detach().cpu().numpy().T
        out["logit_bias"] = self.head.bias.detach().cpu().numpy()
        return out


class FreshTiles(IterableDataset):
    """Endless labelled tiles of fresh synthetic images from the given pictures."""

    def __init__(self, pics: list, seed: int, host_resample: bool = False) -> None:
        self.pics, self.seed, self.host_resample = pics, seed, host_resample

    def __iter__(self):
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            host = int(rng.integers(len(self.pics)))
            donor = int(rng.integers(len(self.pics) - 1))
            donor += donor >= host
            draw = rng.random()
            kind = "authentic" if draw < 0.4 else "splice" if draw < 0.8 else "copy_move"
            sample = make_sample(
                self.pics[host], self.pics[donor], rng, kind, host_resample=self.host_resample
            )
            if kind == "copy_move" and "none" in sample["detail"]:
                continue  # as training/tamper/splice.build: a never-JPEG copy-move leaves no trace
            yield labelled_tiles(sample, rng)


def one_thread(_: int) -> None:
    """Each worker's OpenCV on one thread: the workers share the machine's cores."""
    cv2.setNumThreads(1)


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    patches = np.concatenate([p for p, _ in items])
    labels = np.concatenate([y for _, y in items])
    return torch.from_numpy(patches), torch.from_numpy(labels)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Rank AUC (ties half), without scikit-learn's import cost in the loop."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels > 0.5
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="the bundle's data folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--images-per-batch", type=int, default=24)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--host-resample", action="store_true",
        help="hosts may be resampled (x0.6-1.5, with or without a JPEG save) before their history",
    )  # fmt: skip
    parser.add_argument("--init", type=Path, help="a run's splice_cnn_keras.npz to start from")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    pics = [p for p in pictures(Path(args.data_root)) if p.split == "train" and p.path.exists()]
    print(f"{len(pics)} train pictures, {args.workers} workers, device {args.device}", flush=True)
    loader = DataLoader(
        FreshTiles(pics, args.seed, args.host_resample),
        batch_size=args.images_per_batch,
        num_workers=args.workers,
        collate_fn=collate,
        worker_init_fn=one_thread,
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    device = torch.device(args.device)
    model = SpliceCnn()
    if args.init:
        with np.load(args.init) as start:
            model.load_state_dict(
                {k[6:]: torch.from_numpy(start[k]) for k in start.files if k.startswith("torch_")}
            )
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = args.minutes * 60
    started = time.time()
    curve, window_labels, window_scores = [], [], []
    steps = patches_seen = 0
    images = 0
    model.train()
    for patches, labels in loader:
        elapsed = time.time() - started
        if elapsed >= budget:
            break
        # linear warm-up, then a cosine over the time budget down to 5 % of the rate
        fraction = min(1.0, elapsed / budget)
        rate = args.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * fraction)))
        rate *= min(1.0, (steps + 1) / args.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = rate
        x = patches.to(device, non_blocking=True).float()[:, None]
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # scored before this batch's update counted: fresh images, an honest running AUC
        window_labels.append(labels.numpy())
        window_scores.append(logits.detach().float().cpu().numpy())
        steps += 1
        images += args.images_per_batch
        patches_seen += len(labels)
        if steps % 200 == 0:
            point = {
                "step": steps,
                "seconds": round(time.time() - started, 1),
                "images": images,
                "patches": patches_seen,
                "lr": rate,
                "loss": round(float(loss.detach()), 4),
                "fresh_tile_auc": round(
                    auc(np.concatenate(window_labels), np.concatenate(window_scores)), 4
                ),
            }
            curve.append(point)
            window_labels, window_scores = [], []
            print(json.dumps(point), flush=True)
    model.eval().float()
    # the probe in full float32: cuDNN's default TF32 convolutions differ from the Keras copy by
    # ~1e-3 of the logit (the first run's probe was made so; splice_cnn.py's check allows it)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    # probe: fresh patches and the folded model's float32 logits, for the Keras import's check
    probe = next(iter(DataLoader(FreshTiles(pics, args.seed + 1), batch_size=8,
                                 collate_fn=collate)))[0][:256]  # fmt: skip
    with torch.no_grad():
        probe_logits = model(probe.to(device).float()[:, None]).cpu().numpy()
    np.savez(
        out / "splice_cnn_keras.npz",
        **model.keras_weights(),
        **{f"torch_{k}": v.cpu().numpy() for k, v in model.state_dict().items()},
        probe_patches=probe.numpy(),
        probe_logits=probe_logits,
    )
    state = {
        "steps": steps,
        "images": images,
        "patches": patches_seen,
        "seconds": round(time.time() - started, 1),
        "images_per_batch": args.images_per_batch,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "seed": args.seed,
        "host_resample": args.host_resample,
        "init": str(args.init) if args.init else None,
        "workers": args.workers,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "train_pictures": len(pics),
        "tile": TILE,
        "context": CNN_CONTEXT,
        "curve": curve,
    }
    (out / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    print(f"done: {steps} steps, {images} images, {patches_seen} patches", flush=True)


if __name__ == "__main__":
    main()
