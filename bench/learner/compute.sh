#!/usr/bin/env bash
# Compute-bound training of the two example apps, train loops only: danling's runner (the train
# split's own samples/s from results.json, evaluation and epoch checkpoints left out), a bare burn
# loop on the same model, data, order and optimizer (`learner bare-mnist`, `learner bare-chargpt`),
# and PyTorch on the same model, data and optimizer (`torch_examples.py`). Alternates the sides,
# PAIRS (2) times, and prints one line per run.
#
#   bench/learner/compute.sh BIN_DIR OUT PYTHON [EPOCHS_MNIST] [EPOCHS_CHARGPT]
#
# BIN_DIR holds the release binaries `mnist`, `chargpt` and `learner` (see bench.sh).
set -euo pipefail
bin=$1
out=$2
python=$3
epochs_mnist=${4:-3}
epochs_gpt=${5:-3}
pairs=${PAIRS:-2}
here=$(cd "$(dirname "$0")" && pwd)
sonnets=$here/../../examples/chargpt/data/sonnets.txt
unset RAYON_NUM_THREADS
mkdir -p "$out"
digits=$out/digits
[ -e "$digits/train-images-idx3-ubyte" ] || "$bin/learner" prepare-mnist "$digits" 10000
common=(--data.batch_size 64 --optim.type adam --optim.lr 0.001 --progress false --device flex)
gpt=(--model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32)

# danling NAME CMD...: the train split's samples/s, averaged over the epochs' results.
danling() {
    local name=$1
    shift
    "$@" --project_root "$out/$name" >"$out/$name.log" 2>&1
    local run
    run=$(tail -1 "$out/$name.log")
    "$python" -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; t=[v['train'] for v in r.values()]; \
s=sum(x['wall'] for x in t); n=sum(x['samples_per_s']*x['wall'] for x in t); \
print(f'{sys.argv[2]:<18} train {n/s:8.1f} samples/s; ' + ', '.join(f'{k} {sum(x[k] for x in t)/s:.1%}' for k in ['data_wait','forward_backward','optimizer','other']))" \
        "$run/results.json" "$name" | tee -a "$out/summary.txt"
}

for i in $(seq "$pairs"); do
    danling "mnist-danling-$i" "$bin/mnist" train --data.path "$digits" --epochs "$epochs_mnist" "${common[@]}"
    "$bin/learner" bare-mnist "$digits" --epochs "$epochs_mnist" 2>&1 | sed "s/^/mnist-bare-$i       /" | tee -a "$out/summary.txt"
    "$python" "$here/torch_examples.py" mnist "$digits" --epochs "$epochs_mnist" | sed "s/^/mnist-torch-$i      /" | tee -a "$out/summary.txt"
done
for i in $(seq "$pairs"); do
    danling "chargpt-danling-$i" "$bin/chargpt" train --data.path "$sonnets" --epochs "$epochs_gpt" "${common[@]}" "${gpt[@]}"
    "$bin/learner" bare-chargpt "$sonnets" --epochs "$epochs_gpt" 2>&1 | sed "s/^/chargpt-bare-$i     /" | tee -a "$out/summary.txt"
    "$python" "$here/torch_examples.py" chargpt "$sonnets" --epochs "$epochs_gpt" | sed "s/^/chargpt-torch-$i    /" | tee -a "$out/summary.txt"
done
