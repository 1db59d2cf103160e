"""PneumoniaMNIST benchmark: ehrtext's image CNN against a plain 3-block CNN, same run.

Train on the official train split (minus a stratified 10 % carved out of it, seed 0, for the
decision threshold and the temperature), report on the official val split, which nothing is
tuned on. Prints AUC / accuracy / ECE and training time (wall and process CPU seconds: the machine is
shared, so the CPU time is the steadier figure); writes ``bench_out/bench_image.json``.

    nice -n 5 .venv/bin/python scripts/bench_image.py            # ours + baseline
    nice -n 5 .venv/bin/python scripts/bench_image.py --no-baseline --epochs 5   # quick look

Data: ../shared/data/pneumoniamnist/pneumoniamnist_train_val.npz (MedMNIST v2, CC BY 4.0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = (
    Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))
    / "pneumoniamnist"
    / "pneumoniamnist_train_val.npz"
)


def carve(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of indices: (rest, carved)."""
    rng = np.random.default_rng(seed)
    carved = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        carved.append(idx[: int(round(fraction * len(idx)))])
    carved_idx = np.sort(np.concatenate(carved))
    rest = np.setdiff1d(np.arange(len(labels)), carved_idx)
    return rest, carved_idx


def plain_cnn():  # the FACTS.md baseline: 3 blocks conv-ReLU-maxpool (32-64-128), no BN
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(128, 1),
    )


def train_plain(x, y, epochs: int, seed: int):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = plain_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    yt = torch.as_tensor(y).float()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 64):
            idx = order[s : s + 64]
            loss = F.binary_cross_entropy_with_logits(net(x[idx]).squeeze(1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net


def evaluate(name, y_tune, logit_tune, y_val, logit_val, seconds, extra=None):
    from sklearn.metrics import roc_auc_score

    from ehrtext.imaging.calibration import (
        accuracy_threshold,
        expected_calibration_error,
        fit_temperature,
    )

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    temperature = fit_temperature(logit_tune, y_tune)
    p_tune = sigmoid(logit_tune / temperature)
    p_val = sigmoid(logit_val / temperature)
    thr = accuracy_threshold(y_tune, p_tune)
    res = {
        "model": name,
        "val_auc": float(roc_auc_score(y_val, p_val)),
        "val_acc": float(np.mean((p_val >= thr) == y_val)),
        "val_acc_at_0.5": float(np.mean((p_val >= 0.5) == y_val)),
        "val_ece": float(expected_calibration_error(y_val, p_val)),
        "val_ece_uncalibrated": float(expected_calibration_error(y_val, sigmoid(logit_val))),
        "threshold": float(thr),
        "temperature": float(temperature),
        "tune_auc": float(roc_auc_score(y_tune, p_tune)),
        "tune_acc": float(np.mean((p_tune >= thr) == y_tune)),
        "train_seconds": round(seconds, 1),
    }
    res.update(extra or {})
    print(
        f"{name:>28}: val AUC {res['val_auc']:.4f}  ACC {res['val_acc']:.4f} "
        f"(thr {thr:.3f} from the tune split; ACC@0.5 {res['val_acc_at_0.5']:.4f})  "
        f"ECE {res['val_ece']:.3f} (T={temperature:.2f})  train {seconds / 60:.1f} min wall"
        + (f", {res['train_cpu_seconds'] / 60:.1f} min CPU" if "train_cpu_seconds" in res else ""),
        flush=True,
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--flip", type=float, default=0.0)
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--tta", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-epochs", type=int, default=15)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--output", type=Path, default=REPO / "bench_out" / "bench_image.json")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from ehrtext.imaging.train import ImageTrainConfig, predict_logits, train_image_classifier

    torch.set_num_threads(args.threads)
    data = np.load(args.data)
    x_train = torch.from_numpy(data["train_images"]).float().div(255).unsqueeze(1)
    y_train = data["train_labels"].reshape(-1).astype(np.int64)
    x_val = torch.from_numpy(data["val_images"]).float().div(255).unsqueeze(1)
    y_val = data["val_labels"].reshape(-1).astype(np.int64)
    fit_idx, tune_idx = carve(y_train, 0.1, args.seed)
    print(
        f"PneumoniaMNIST: train {len(y_train)} (fit {len(fit_idx)} + tune {len(tune_idx)}), "
        f"val {len(y_val)} (report only); threads {torch.get_num_threads()}, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = []

    def resize(x):
        if args.size == x.shape[-1]:
            return x
        return F.interpolate(x, size=(args.size, args.size), mode="bilinear", align_corners=False)

    config = ImageTrainConfig(
        widths=tuple(int(w) for w in args.widths.split(",")),
        image_size=args.size,
        epochs=args.epochs,
        learning_rate=args.lr,
        flip_prob=args.flip,
        ema_decay=args.ema,
        tta_shifts=args.tta,
        seed=args.seed,
        threads=args.threads,
    )
    xf, xt, xv = resize(x_train[fit_idx]), resize(x_train[tune_idx]), resize(x_val)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    load0 = os.getloadavg()[0]
    net, history = train_image_classifier(
        xf,
        y_train[fit_idx],
        config,
        task="binary",
        num_outputs=1,
        log=lambda s: print("  ", s, flush=True),
    )
    secs = time.perf_counter() - t0
    cpu_secs = time.process_time() - cpu0
    load1 = os.getloadavg()[0]
    tta = args.tta * max(1, args.size // 28)
    lt = predict_logits(net, xt, tta=tta, flip=args.flip > 0).numpy()[:, 0]
    lv = predict_logits(net, xv, tta=tta, flip=args.flip > 0).numpy()[:, 0]
    lv0 = predict_logits(net, xv).numpy()[:, 0]
    lt0 = predict_logits(net, xt).numpy()[:, 0]
    ours = evaluate(
        "ehrtext CompactCNN + TTA",
        y_train[tune_idx],
        lt,
        y_val,
        lv,
        secs,
        {
            "config": config.to_dict(),
            "history": history,
            "load_avg_start": load0,
            "load_avg_end": load1,
            "train_cpu_seconds": round(cpu_secs, 1),
        },
    )
    no_tta = evaluate("ehrtext CompactCNN, no TTA", y_train[tune_idx], lt0, y_val, lv0, secs)
    results += [ours, no_tta]

    if not args.no_baseline:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        base = train_plain(x_train[fit_idx], y_train[fit_idx], args.baseline_epochs, args.seed)
        secs_b = time.perf_counter() - t0
        cpu_b = time.process_time() - cpu0
        with torch.no_grad():
            bt = base(x_train[tune_idx]).numpy()[:, 0]
            bv = base(x_val).numpy()[:, 0]
        results.append(
            evaluate(
                f"plain 3-block CNN, {args.baseline_epochs} ep",
                y_train[tune_idx],
                bt,
                y_val,
                bv,
                secs_b,
                {"train_cpu_seconds": round(cpu_b, 1)},
            )
        )
    out = {
        "dataset": "PneumoniaMNIST (MedMNIST v2) official train/val, 28x28",
        "protocol": "train on official train minus a stratified 10% tune split (seed "
        f"{args.seed}); threshold = max accuracy on the tune split; temperature fitted on "
        "the tune split; AUC/ACC on official val (never tuned on)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        "shared with other jobs",
        "command": " ".join(sys.argv),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
