"""PyTorch beside danling and burn-train's Learner on the two example apps, compute-bound (data in
memory, fetched on the training thread): the same models, data, batch, optimizer and epochs.

  mnist    burn's MNIST CNN (examples/mnist/src/model.rs): [conv 3x3 valid -> BatchNorm2d -> ReLU ->
           maxpool 2x2] with 64 and 64 channels -> linear 128 -> GELU -> dropout 0.25 -> linear 128 ->
           GELU -> dropout -> linear 10, on the IDX files `learner prepare-mnist` writes; pixels
           ((x / 255) - 0.1307) / 0.3081
  chargpt  nanoGPT's shape (examples/chargpt/src/model.rs): token + position embeddings, n_layer
           pre-norm blocks (multi-head causal self-attention, MLP 4x with GELU), final LayerNorm,
           head without bias; no dropout; train windows of block_size + 1 at every position of the
           first 90% of the text, validation windows side by side in the rest
  both     Adam lr 1e-3 (betas 0.9, 0.999, eps 1e-8), batch 64, shuffled train split, evaluation of
           the other split after each epoch, torch threads = the cores
usage: python torch_examples.py mnist DIR [--epochs 3] | chargpt FILE [--epochs 3] [--n-layer 2 ...]
prints one JSON line: train samples/s (train loops only) and the whole run's seconds
"""
import argparse, gzip, json, os, struct, time
import torch
from torch import nn
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("example", choices=["mnist", "chargpt"])
ap.add_argument("path")
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--block-size", type=int, default=32)
ap.add_argument("--n-layer", type=int, default=2)
ap.add_argument("--n-head", type=int, default=2)
ap.add_argument("--n-embd", type=int, default=32)
args = ap.parse_args()
torch.set_num_threads(os.cpu_count())
torch.manual_seed(1016)


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), data[4:4 + 4 * (magic & 0xFF)])
    return torch.frombuffer(bytearray(data[4 + 4 * len(dims):]), dtype=torch.uint8).reshape(dims)


def mnist_data():
    def split(prefix):
        x = idx(os.path.join(args.path, f"{prefix}-images-idx3-ubyte")).float()
        y = idx(os.path.join(args.path, f"{prefix}-labels-idx1-ubyte")).long()
        return ((x / 255 - 0.1307) / 0.3081).unsqueeze(1), y
    return split("train"), split("t10k")


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2, 2))


class Gpt(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        d = args.n_embd
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(args.block_size, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(args.n_layer))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(t))
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).split(d, dim=2)
        heads = lambda z: z.view(n, t, args.n_head, d // args.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.n2(x))


def chargpt_data():
    text = open(args.path, encoding="utf-8").read()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    cut = len(ids) - round(len(ids) * 0.1)
    train, val = ids[:cut], ids[cut:]
    w = args.block_size + 1
    tr = train.unfold(0, w, 1)
    va = val.unfold(0, w, args.block_size)
    return (tr[:, :-1], tr[:, 1:]), (va[:, :-1], va[:, 1:]), len(chars)


start = time.perf_counter()
if args.example == "mnist":
    (x, y), (vx, vy) = mnist_side = mnist_data()
    side = ((28 - 2) // 2 - 2) // 2
    model = nn.Sequential(block(1, 64), block(64, 64), nn.Flatten(), nn.Linear(64 * side * side, 128), nn.GELU(),
                          nn.Dropout(0.25), nn.Linear(128, 128), nn.GELU(), nn.Dropout(0.25), nn.Linear(128, 10))
    loss_of = lambda out, target: F.cross_entropy(out, target)
else:
    (x, y), (vx, vy), vocab = chargpt_data()
    model = Gpt(vocab)
    loss_of = lambda out, target: F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
trained, train_seconds = 0, 0.0
for epoch in range(args.epochs):
    model.train()
    t = time.perf_counter()
    order = torch.randperm(len(x))
    for i in range(0, len(x), args.batch):
        rows = order[i:i + args.batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(x[rows]), y[rows])
        loss.backward()
        optimizer.step()
        trained += len(rows)
    train_seconds += time.perf_counter() - t
    model.eval()
    with torch.no_grad():
        val_loss = sum(loss_of(model(vx[i:i + args.batch]), vy[i:i + args.batch]).item() * len(vx[i:i + args.batch])
                       for i in range(0, len(vx), args.batch)) / len(vx)
wall = time.perf_counter() - start
print(json.dumps({"framework": f"torch {torch.__version__}", "example": args.example, "epochs": args.epochs,
                  "train_samples": trained, "train_samples_per_s": round(trained / train_seconds, 1),
                  "wall_s": round(wall, 3), "val_loss": round(val_loss, 4)}))
