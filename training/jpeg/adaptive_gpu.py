"""The adaptive attack of training/jpeg/adaptive.py at the paper's scale, on a lent accelerator.

The accelerator machine has PyTorch and no TensorFlow, so this script imports only the
project's TensorFlow-free JPEG helper (training/jpeg/data.py; run it with the checkout on
PYTHONPATH): it reads a bundle written here by `python -m training.jpeg.adaptive --export-gpu-bundle`
(the frozen replica of models/jpeg_history.tflite as constants and op steps, the train-split
never-JPEG pictures, validation patches, the TF replica's logits on check patches and the kiosk's
DC-comb z on check crops, which this script must reproduce before it trains) and writes
the generator's weights under Keras layer names, which `--import-gpu` loads into the Keras
generator of training/jpeg/nets.py. Same model and loss as the CPU trainer (identity-initialised
16 x 64 generator, L1 + gamma * softplus(replica logit of the uint8-rounded output)); the paper's
128-px patches, each scored by the replica as its four 64-px tiles (the kiosk scores a 64-px
grid from the origin), compressed on the fly at a random quality in 20..95 from random crops,
flips and rot90 of the train pictures. Checkpoints (weights + state.json) are rewritten every
`--save-seconds`, so a run stopped at its time limit still returns its last weights.

    PYTHONPATH=$PWD python3 training/jpeg/adaptive_gpu.py --bundle gpu_bundle --out $OUT --minutes 7
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.jpeg.data import jpeg_roundtrip

QUALITY_RANGE = (20, 95)
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.01  # Keras BatchNormalization defaults (momentum 0.99)


def fake_quant(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """int8 rounding forward, identity backward (as adaptive._fake_quant)."""
    q = (torch.clamp(torch.round(x / scale) + zero_point, -128.0, 127.0) - zero_point) * scale
    return x + (q - x).detach()


class Replica(nn.Module):
    """The TF replica's steps on NCHW tensors; flattening goes through NHWC as TFLite's does."""

    def __init__(self, bundle: np.lib.npyio.NpzFile) -> None:
        super().__init__()
        spec = json.loads(str(bundle["replica_spec"]))
        self.steps = spec["steps"]
        self.quant = {int(k): v for k, v in spec["quant"].items()}
        self.input_index, self.output_index = spec["input_index"], spec["output_index"]
        self.constant_ids: set[int] = set()
        for key in bundle.files:
            if key.startswith("const_"):
                value = torch.from_numpy(bundle[key].astype(np.float32))
                if value.ndim == 4:  # conv kernel (kh, kw, in, out) -> (out, in, kh, kw)
                    value = value.permute(3, 2, 0, 1).contiguous()
                self.register_buffer(f"c{key[6:]}", value)
                self.constant_ids.add(int(key[6:]))

    def _channel(self, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if like.ndim == 4 and value.ndim == 1 and value.numel() > 1:
            return value.view(1, -1, 1, 1)
        return value

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 1, 64, 64) float pixels 0..255 -> (N,) float logits."""
        values = {self.input_index: pixels}
        for step in self.steps:
            name, inputs, output = step["op"], step["inputs"], step["output"]
            args = [
                getattr(self, f"c{i}") if i in self.constant_ids else values.get(i) for i in inputs
            ]
            if name == "QUANTIZE":
                y = args[0]
            elif name in ("MUL", "ADD"):
                a, b = args
                a, b = self._channel(a, b), self._channel(b, a)
                y = a * b if name == "MUL" else a + b
            elif name == "CONCATENATION":
                y = torch.cat(args, dim=1)
            elif name == "CONV_2D":
                y = F.conv2d(args[0], args[1], args[2], padding=args[1].shape[-1] // 2)
            elif name == "MAX_POOL_2D":
                y = F.max_pool2d(args[0], step["pool"], step["pool"])
            elif name == "RESHAPE":
                y = args[0].permute(0, 2, 3, 1).reshape(args[0].shape[0], -1)
            else:  # FULLY_CONNECTED, weights (in, out)
                y = args[0] @ args[1] + args[2]
            if step["relu"]:
                y = F.relu(y)
            if output != self.output_index:
                y = fake_quant(y, *self.quant[output])
            values[output] = y
        return values[self.output_index].reshape(-1)


def conv(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    layer = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    nn.init.xavier_uniform_(layer.weight)  # Keras' glorot_uniform
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class Generator(nn.Module):
    """training/jpeg/nets.generator in PyTorch, module names = Keras layer names."""

    def __init__(self, blocks: int, filters: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.layers = nn.ModuleDict({"head": conv(1, filters)})
        for b in range(blocks):
            for c in range(2):
                self.layers[f"b{b}_conv{c}"] = conv(filters, filters, bias=False)
                self.layers[f"b{b}_bn{c}"] = nn.BatchNorm2d(
                    filters, eps=BN_EPSILON, momentum=BN_MOMENTUM
                )
        self.layers["tail0"] = conv(filters, filters)
        self.layers["tail1"] = conv(filters, filters)
        self.layers["tail2"] = conv(filters, 1)
        nn.init.zeros_(self.layers["tail2"].weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        act, layers = F.leaky_relu, self.layers
        first = act(layers["head"](image), 0.2)
        x = first
        for b in range(self.blocks):
            skip = x
            for c in range(2):
                x = act(layers[f"b{b}_bn{c}"](layers[f"b{b}_conv{c}"](x)), 0.2)
            x = skip + x
        x = act(first + layers["tail0"](x), 0.2)
        x = act(layers["tail1"](x), 0.2)
        x = layers["tail2"](x).float()
        return torch.tanh(x + torch.atanh(torch.clamp(image, -0.999, 0.999)))

    def load_keras_weights(self, weights: dict[str, np.ndarray]) -> None:
        """The inverse of `keras_weights` (to go on from an earlier run's output)."""
        for name, layer in self.layers.items():
            if isinstance(layer, nn.Conv2d):
                kernel = torch.from_numpy(weights[f"{name}/kernel"]).permute(3, 2, 0, 1)
                layer.weight.data.copy_(kernel)
                if layer.bias is not None:
                    layer.bias.data.copy_(torch.from_numpy(weights[f"{name}/bias"]))
            else:
                for attr, key in (("weight", "gamma"), ("bias", "beta")):
                    getattr(layer, attr).data.copy_(torch.from_numpy(weights[f"{name}/{key}"]))
                layer.running_mean.copy_(torch.from_numpy(weights[f"{name}/moving_mean"]))
                layer.running_var.copy_(torch.from_numpy(weights[f"{name}/moving_variance"]))

    def keras_weights(self) -> dict[str, np.ndarray]:
        """{"layer/variable": array} in Keras layout (conv kernels (kh, kw, in, out))."""
        out = {}
        for name, layer in self.layers.items():
            if isinstance(layer, nn.Conv2d):
                out[f"{name}/kernel"] = layer.weight.detach().permute(2, 3, 1, 0).cpu().numpy()
                if layer.bias is not None:
                    out[f"{name}/bias"] = layer.bias.detach().cpu().numpy()
            else:
                out[f"{name}/gamma"] = layer.weight.detach().cpu().numpy()
                out[f"{name}/beta"] = layer.bias.detach().cpu().numpy()
                out[f"{name}/moving_mean"] = layer.running_mean.cpu().numpy()
                out[f"{name}/moving_variance"] = layer.running_var.cpu().numpy()
        return out


class Patches(torch.utils.data.IterableDataset):
    """Endless batches of (jpeg, original) uint8 crops; each worker draws its own."""

    def __init__(self, images: list[np.ndarray], size: int, batch: int, seed: int) -> None:
        self.images = [im for im in images if min(im.shape) >= size]
        area = np.array([(im.shape[0] - size + 1) * (im.shape[1] - size + 1) for im in self.images])
        self.weights = area / area.sum()
        self.size, self.batch, self.seed = size, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(self.seed + (info.id if info else 0))
        s = self.size
        while True:
            jpeg = np.empty((self.batch, 1, s, s), np.uint8)
            original = np.empty_like(jpeg)
            for i in range(self.batch):
                image = self.images[rng.choice(len(self.images), p=self.weights)]
                y = int(rng.integers(0, image.shape[0] - s + 1))
                x = int(rng.integers(0, image.shape[1] - s + 1))
                crop = np.rot90(image[y : y + s, x : x + s], int(rng.integers(0, 4)))
                if rng.integers(0, 2):
                    crop = crop[:, ::-1]
                crop = np.ascontiguousarray(crop)
                quality = int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1))
                original[i, 0], jpeg[i, 0] = crop, jpeg_roundtrip(crop, quality)[0]
            yield torch.from_numpy(jpeg), torch.from_numpy(original)


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 127.5 - 1.0


def round_pixels(unit: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8-rounded 0..255 pixels, straight-through."""
    pixels = (unit + 1.0) * 127.5
    return pixels + (torch.clamp(torch.round(pixels), 0.0, 255.0) - pixels).detach()


COMB_STEPS = torch.arange(3, 27, dtype=torch.float32)  # kiosk jpeg_grid.STEPS
FLAT_STD = 2.0  # kiosk jpeg_grid.FLAT_STD


def comb_z(pixels: torch.Tensor) -> torch.Tensor:
    """The kiosk's DC-comb statistic on each patch's own 8x8 grid (jpeg_grid.comb_statistic at
    offset (0, 0)), differentiable in the pixels: (N, 1, S, S) -> (N, len(COMB_STEPS)) z values.
    Usable blocks as the kiosk's: std >= 2, no 0 or 255 pixel (chosen without gradient)."""
    n, _, s, _ = pixels.shape
    blocks = pixels.reshape(n, s // 8, 8, s // 8, 8).permute(0, 1, 3, 2, 4).reshape(n, -1, 64)
    with torch.no_grad():
        usable = (
            (blocks.std(dim=2, unbiased=False) >= FLAT_STD)
            & (blocks.amin(dim=2) > 0)
            & (blocks.amax(dim=2) < 255)
        ).float()
    dc = blocks.sum(dim=2) / 8.0
    angle = 2 * math.pi * dc[..., None] / COMB_STEPS.to(pixels.device)
    count = usable.sum(dim=1, keepdim=True).clamp_min(1.0)
    cos = (torch.cos(angle) * usable[..., None]).sum(dim=1) / count
    sin = (torch.sin(angle) * usable[..., None]).sum(dim=1) / count
    return count * (cos**2 + sin**2)


def tiles64(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) -> (N * (S/64)^2, 1, 64, 64), tiles on the origin's 64-px grid."""
    n, _, s, _ = pixels.shape
    k = s // 64
    return (
        pixels.reshape(n, 1, k, 64, k, 64).permute(0, 2, 4, 1, 3, 5).reshape(n * k * k, 1, 64, 64)
    )


@torch.no_grad()
def validate(gen: Generator, replica: Replica, val: dict, threshold_logit: float) -> dict:
    """Eval-mode generator on the fixed validation patches: L1, PSNR gain over JPEG, flag rate."""
    gen.eval()
    jpeg, original = val["jpeg"], val["original"]
    out = torch.cat([gen(to_unit(jpeg[i : i + 256])) for i in range(0, len(jpeg), 256)])
    gen.train()
    pixels = torch.clamp(torch.round((out + 1.0) * 127.5), 0, 255)
    logits = torch.cat([replica(pixels[i : i + 512]) for i in range(0, len(pixels), 512)])

    def psnr(a: torch.Tensor) -> float:
        mse = ((a - original.float()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-3)
        return float((10 * torch.log10(255.0**2 / mse)).mean())

    return {
        "val_l1": round(float((out - to_unit(original)).abs().mean()), 5),
        "val_psnr_gain_db": round(psnr(pixels) - psnr(jpeg.float()), 3),
        "val_flagged": round(float((logits > threshold_logit).float().mean()), 4),
        "val_mean_logit": round(float(logits.mean()), 3),
        "val_comb_max_z": round(float(comb_z(pixels).amax(dim=1).mean()), 2),
    }


@torch.no_grad()
def save(out: Path, gen: Generator, state: dict, probe: torch.Tensor) -> None:
    """Weights then state, each written whole and renamed, so a stopped run leaves a pair. The
    eval-mode float32 output on `probe` (unit-range patches) lets the import check its layout."""
    gen.eval()
    with torch.autocast(probe.device.type, enabled=False):
        probe_out = gen(probe).cpu().numpy()
    gen.train()
    tmp = out / "generator_keras.tmp.npz"
    arrays = {"probe/in": probe.cpu().numpy(), "probe/out": probe_out}
    np.savez(tmp, **gen.keras_weights(), **arrays)
    tmp.replace(out / "generator_keras.npz")
    (out / "state.tmp").write_text(json.dumps(state, indent=2))
    (out / "state.tmp").replace(out / "state.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=7.0, help="training wall time")
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="paper: 16")
    parser.add_argument("--size", type=int, default=128, help="paper: 128")
    parser.add_argument("--lr", type=float, default=2e-4, help="cosine to a tenth over the run")
    parser.add_argument("--warmup-steps", type=int, default=500, help="linear lr warm-up")
    parser.add_argument("--gamma", type=float, default=1e-2)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--save-seconds", type=float, default=45.0)
    parser.add_argument("--log-steps", type=int, default=500)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--init", type=Path, help="start from an earlier run's generator_keras.npz")
    parser.add_argument(
        "--comb-weight",
        type=float,
        default=0.0,
        help="also attack the kiosk's DC comb: + weight * softplus(max z - comb-margin)",
    )
    parser.add_argument("--comb-margin", type=float, default=8.0, help="z below which it rests")
    args = parser.parse_args()
    began = time.perf_counter()
    torch.manual_seed(15)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # replica
    bundle = np.load(args.bundle / "replica.npz")
    replica = Replica(bundle).to(device)
    check = torch.from_numpy(bundle["check_patches"]).float()[:, None].to(device)
    with torch.no_grad():
        ours = replica(check).cpu().numpy()
    diff = np.abs(ours - bundle["check_logits"])
    agreement = {"max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean())}
    print("replica vs TF replica on check patches:", agreement, flush=True)
    if diff.mean() > 0.02:
        raise SystemExit("the PyTorch replica does not score like the TF replica")
    if args.comb_weight:  # the attacked statistic must be the kiosk's
        crops = torch.from_numpy(bundle["comb_check_crops"]).float()[:, None]
        decided = bundle["comb_check_blocks"] >= 64  # the kiosk's MIN_BLOCKS
        ours_z = comb_z(crops).amax(dim=1).numpy()[decided]
        kiosk_z = bundle["comb_check_z"][decided]
        comb_diff = float((np.abs(ours_z - kiosk_z) / np.maximum(kiosk_z, 1.0)).max())
        agreement["comb_z_max_relative_diff"] = comb_diff
        print(f"comb z vs the kiosk's on {decided.sum()} crops: {comb_diff:.1e}", flush=True)
        if comb_diff > 1e-3:
            raise SystemExit("comb_z does not compute the kiosk's DC-comb statistic")
    threshold_logit = float(bundle["threshold_logit"])
    val = {
        k: torch.from_numpy(bundle[f"val_{k}"][:, None]).to(device) for k in ("jpeg", "original")
    }
    pictures = np.load(args.bundle / "train_images.npz")
    images = [pictures[k] for k in sorted(pictures.files, key=lambda k: int(k[3:]))]
    loader = torch.utils.data.DataLoader(
        Patches(images, args.size, args.batch, seed=15),
        batch_size=None,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    probe = to_unit(val["jpeg"][:8])
    gen = Generator(args.blocks, args.filters)
    if args.init:
        gen.load_keras_weights(dict(np.load(args.init)))
    gen = gen.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(gen.parameters(), args.lr, betas=(0.9, 0.999), eps=1e-8)
    args.out.mkdir(parents=True, exist_ok=True)
    state = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "trainer": "training/jpeg/adaptive_gpu.py",
        "replica_check": agreement,
        "train_pictures": len(images),
        "validation_patches": len(val["jpeg"]),
        "patch_size": args.size,
        "bf16": args.bf16,
        "lr_schedule": "linear warm-up, then cosine from lr to lr/10 over the wall-time budget",
        "quality_range": list(QUALITY_RANGE),
        **{k: getattr(args, k) for k in ("blocks", "filters", "batch", "gamma", "lr", "minutes")},
        "init": str(args.init) if args.init else None,
        "comb_weight": args.comb_weight,
        "comb_margin": args.comb_margin,
        "lr_warmup_steps": args.warmup_steps,
        "warmup_steps": 0,  # L1-only steps, as the CPU trainer's key
        "steps_done": 0,
        "seconds": 0.0,
        "log": [],
    }
    state["log"].append({"step": 0, **validate(gen, replica, val, threshold_logit)})
    print(json.dumps(state["log"][-1]), flush=True)
    budget = args.minutes * 60
    train_start = last_save = time.perf_counter()
    sums: dict[str, float] = {}
    count = 0
    for jpeg, original in loader:
        elapsed = time.perf_counter() - train_start
        if elapsed > budget:
            break
        warmup = min(1.0, (state["steps_done"] + 1) / args.warmup_steps)
        cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * elapsed / budget))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup * cosine
        x = to_unit(jpeg.to(device, non_blocking=True)).contiguous(
            memory_format=torch.channels_last
        )
        y = to_unit(original.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            fake = gen(x)
        l1 = (fake - y).abs().mean()
        logits = replica(tiles64(round_pixels(fake)))
        adv = F.softplus(logits).mean()
        loss = l1 + args.gamma * adv
        if args.comb_weight:
            z = comb_z(round_pixels(fake).float()).amax(dim=1)
            comb = F.softplus(z - args.comb_margin).mean()
            loss = loss + args.comb_weight * comb
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state["steps_done"] += 1
        tracked = [("l1", l1), ("adv", adv), ("mean_logit", logits.mean())]
        if args.comb_weight:
            tracked += [("comb_max_z", z.mean()), ("comb_loss", comb)]
        for key, value in tracked:
            sums[key] = sums.get(key, 0.0) + float(value.detach())  # syncs: fine at this size
        count += 1
        if state["steps_done"] % args.log_steps == 0:
            record = {
                "step": state["steps_done"],
                "seconds": round(time.perf_counter() - train_start, 1),
                "lr": round(optimizer.param_groups[0]["lr"], 7),
                **{k: round(v / count, 5) for k, v in sums.items()},
                **validate(gen, replica, val, threshold_logit),
            }
            state["log"].append(record)
            print(json.dumps(record), flush=True)
            sums, count = {}, 0
        if time.perf_counter() - last_save > args.save_seconds:
            state["seconds"] = round(time.perf_counter() - train_start, 1)
            save(args.out, gen, state, probe)
            last_save = time.perf_counter()
    state["seconds"] = round(time.perf_counter() - train_start, 1)
    state["log"].append(
        {"step": state["steps_done"], "final": True, **validate(gen, replica, val, threshold_logit)}
    )
    state["patches_seen"] = state["steps_done"] * args.batch
    state["total_seconds"] = round(time.perf_counter() - began, 1)
    save(args.out, gen, state, probe)
    print(json.dumps(state["log"][-1]), "steps", state["steps_done"], flush=True)


if __name__ == "__main__":
    main()
