"""Reference for case (i): PyTorch's DataLoader over torchvision's ImageFolder, training the same
MNIST-shaped CNN as danling's `mnist` example (burn's MNIST model) for one epoch on the same PNGs.

  model      [conv 3x3 (valid) -> BatchNorm2d -> ReLU -> maxpool 2x2] x 2 -> flatten
             -> linear(hidden) -> GELU -> dropout 0.25 -> linear(hidden) -> GELU -> dropout -> linear(10)
  data       ROOT/train/<digit>/*.png, grey 28x28, ((x / 255) - 0.1307) / 0.3081, shuffled, batch BATCH
  optimiser  AdamW lr 1e-3, no weight decay
usage: python imagefolder_torch.py ROOT [--workers 0] [--threads 2] [--channels 8 16] [--hidden 64] [--batch 64]
prints one JSON line: train samples/s over the epoch and the share of it spent waiting for batches
"""
import argparse, json, time
import torch
from torch import nn
from torchvision import datasets, transforms

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--workers", type=int, default=0)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--channels", type=int, nargs=2, default=[8, 16])
ap.add_argument("--hidden", type=int, default=64)
ap.add_argument("--batch", type=int, default=64)
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(1016)

transform = transforms.Compose([
    transforms.Grayscale(1),
    transforms.ToTensor(),
    transforms.Normalize((0.1307,), (0.3081,)),
])
train = datasets.ImageFolder(f"{args.root}/train", transform=transform)
loader = torch.utils.data.DataLoader(
    train, batch_size=args.batch, shuffle=True, num_workers=args.workers,
    persistent_workers=args.workers > 0, prefetch_factor=2 if args.workers > 0 else None,
)


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2, 2))


c1, c2 = args.channels
side = ((28 - 2) // 2 - 2) // 2
model = nn.Sequential(
    block(1, c1), block(c1, c2), nn.Flatten(),
    nn.Linear(c2 * side * side, args.hidden), nn.GELU(), nn.Dropout(0.25),
    nn.Linear(args.hidden, args.hidden), nn.GELU(), nn.Dropout(0.25),
    nn.Linear(args.hidden, 10),
)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
criterion = nn.CrossEntropyLoss()

model.train()
samples, waited = 0, 0.0
start = time.perf_counter()
batches = iter(loader)
while True:
    t = time.perf_counter()
    try:
        images, labels = next(batches)
    except StopIteration:
        break
    waited += time.perf_counter() - t
    optimizer.zero_grad(set_to_none=True)
    loss = criterion(model(images), labels)
    loss.backward()
    optimizer.step()
    samples += len(labels)
wall = time.perf_counter() - start
print(json.dumps({"framework": f"torch {torch.__version__}", "workers": args.workers, "threads": args.threads,
                  "train_samples": samples, "wall_s": round(wall, 3),
                  "train_samples_per_s": round(samples / wall, 1), "data_wait_share": round(waited / wall, 4),
                  "final_loss": round(loss.item(), 4)}))
