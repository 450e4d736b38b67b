"""torchmetrics' side of the AUROC benchmark (case e of bench/run), on the data danling-bench wrote
into DIR (raw little-endian f64 predictions and i64 targets).

usage: python bench/metrics_torchmetrics.py DIR [--threads 1]
prints one JSON line per case; danling-bench reads them.
"""
import argparse, json, os, time

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)


def load(name, dtype):
    return torch.from_numpy(np.fromfile(os.path.join(args.dir, name), dtype=dtype))


def best_of(runs, f):
    best, value = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        value = f()
        best = min(best, time.perf_counter() - start)
    return best, float(value)


preds, targets = load("binary_preds.f64", "<f8"), load("binary_targets.i64", "<i8")
seconds, value = best_of(3, lambda: binary_auroc(preds, targets))
print(json.dumps({"case": "binary_auroc_10M", "framework": "torchmetrics", "seconds": round(seconds, 4), "value": value, "threads": args.threads}))

preds, targets = load("multiclass_preds.f64", "<f8").reshape(-1, 10), load("multiclass_targets.i64", "<i8")
seconds, value = best_of(3, lambda: multiclass_auroc(preds, targets, num_classes=10, average="macro"))
print(json.dumps({"case": "multiclass_auroc_1Mx10", "framework": "torchmetrics", "seconds": round(seconds, 4), "value": value, "threads": args.threads}))
