"""Reference for bench/gpu: the benchmark MLP (bench/mlp.yaml) trained by plain PyTorch on a GPU, in
f32 and in mixed precision (autocast, with a GradScaler for f16), as danling trains it there.

  model      784 -> 512 -> ReLU -> 512 -> ReLU -> 10, cross-entropy
  optimiser  AdamW lr 1e-3, weight decay 1e-4
  data       N_TRAIN x 784 float32 features on the device, labels 0..9; batch 128, shuffled each epoch
  timing     training steps only (the first epoch warms up and is not timed), synchronised

usage: python torch_gpu.py --precision f32|f16|bf16 [--epochs 3] [--n-train 12800] [--device cuda]
prints one JSON line: {"framework": ..., "precision": ..., "train_samples_per_s": ...}
"""
import argparse
import json
import time

import torch
from torch import nn

ap = argparse.ArgumentParser()
ap.add_argument("--precision", choices=["f32", "f16", "bf16"], default="f32")
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--n-train", type=int, default=12800)
ap.add_argument("--batch-size", type=int, default=128)
ap.add_argument("--device", default="cuda")
args = ap.parse_args()

device = torch.device(args.device)
g = torch.Generator().manual_seed(0)
x = torch.rand(args.n_train, 784, generator=g)
y = torch.randint(0, 10, (args.n_train,), generator=g)
x[torch.arange(args.n_train), y * 78] += 3.0
x, y = x.to(device), y.to(device)

model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
criterion = nn.CrossEntropyLoss()
dtype = {"f32": None, "f16": torch.float16, "bf16": torch.bfloat16}[args.precision]
scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "f16")


def epoch():
    order = torch.randperm(args.n_train, device=device)
    for start in range(0, args.n_train, args.batch_size):
        rows = order[start : start + args.batch_size]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = criterion(model(x[rows]), y[rows])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


epoch()  # warm-up: kernels, allocator
sync()
t = time.perf_counter()
for _ in range(args.epochs):
    last = epoch()
sync()
wall = time.perf_counter() - t
print(json.dumps({
    "framework": "torch " + torch.__version__,
    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
    "precision": args.precision,
    "train_samples_per_s": round(args.n_train * args.epochs / wall, 1),
    "wall_s": round(wall, 3),
    "final_loss": round(float(last), 4),
}))
