#!/usr/bin/env bash
# Times each example app (danling's runner) beside the same training by burn-train's Learner,
# alternately: danling, Learner, danling, Learner (then the Learner on the system allocator, as
# `learner-sysalloc`, if that binary is there). Prints one line per run; the logs go to $OUT.
#
#   bench/learner/bench.sh BIN_DIR OUT [EPOCHS_MNIST] [EPOCHS_CHARGPT] [BATCH]
#
# BIN_DIR holds copies of the release binaries `mnist`, `chargpt` (danling's apps), `learner`
# (this crate, default features: mimalloc) and optionally `learner-sysalloc` (this crate built with
# --no-default-features), so that a rebuild in the shared target directory cannot change them
# between runs. RAYON_NUM_THREADS is unset for every run.
#
# Environment: LEARNER_METRICS=full (default: loss, accuracy, AUROC, AUPRC, F1, and perplexity for
# chargpt, as near danling's presets as burn-train has) or minimal (loss and accuracy, and
# perplexity for chargpt); PAIRS (2): danling/Learner pairs per example; SYSALLOC (1): 0 skips the
# system-allocator Learner runs; EXAMPLES ("mnist chargpt"): which examples to time.
set -euo pipefail
bin=$1
out=$2
epochs_mnist=${3:-3}
epochs_gpt=${4:-3}
batch=${5:-64}
repo=$(cd "$(dirname "$0")/../.." && pwd)
sonnets=$repo/examples/chargpt/data/sonnets.txt
metrics=${LEARNER_METRICS:-full}
pairs=${PAIRS:-2}
sysalloc=${SYSALLOC:-1}
examples=${EXAMPLES:-mnist chargpt}
tag=$([ "$metrics" = full ] && echo learner || echo "learner-$metrics")
unset RAYON_NUM_THREADS
mkdir -p "$out"
digits=$out/digits
[ -e "$digits/train-images-idx3-ubyte" ] || "$bin/learner" prepare-mnist "$digits" 10000

common=(--data.batch_size "$batch" --optim.type adam --optim.lr 0.001 --progress false --device flex)
gpt_model=(--model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32)

# run NAME CMD...: times CMD (wall, user, sys), its output in $out/NAME.log.
run() {
    local name=$1
    shift
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -f "%e %U %S %M" -o "$out/$name.time" "$@" >"$out/$name.log" 2>&1
    end=$(date +%s.%N)
    local line
    line=$(grep -h "trained [0-9]* samples in" "$out/$name.log" | tail -1 | sed 's/.*trained/trained/')
    read -r wall user sys rss <"$out/$name.time"
    printf '%-22s load %-5s process %6.2f s (user %6.2f, sys %5.2f, max RSS %s KiB) | %s\n' \
        "$name" "$load" "$wall" "$user" "$sys" "$rss" "$line" | tee -a "$out/summary.txt"
}

for i in $(seq "$pairs"); do
    [[ " $examples " == *" mnist "* ]] || break
    run "mnist-danling-$i" "$bin/mnist" train --data.path "$digits" --epochs "$epochs_mnist" "${common[@]}" \
        --project_root "$out/danling-mnist-$i"
    run "mnist-$tag-$i" "$bin/learner" mnist "$digits" "$out/$tag-mnist-$i" \
        --epochs "$epochs_mnist" --batch-size "$batch" --lr 0.001 --metrics "$metrics"
done
for i in $(seq "$pairs"); do
    [[ " $examples " == *" chargpt "* ]] || break
    run "chargpt-danling-$i" "$bin/chargpt" train --data.path "$sonnets" --epochs "$epochs_gpt" "${common[@]}" \
        "${gpt_model[@]}" --project_root "$out/danling-chargpt-$i"
    run "chargpt-$tag-$i" "$bin/learner" chargpt "$sonnets" "$out/$tag-chargpt-$i" \
        --epochs "$epochs_gpt" --batch-size "$batch" --lr 0.001 --block-size 32 --n-layer 2 --n-head 2 --n-embd 32 \
        --metrics "$metrics"
done
if [ "$sysalloc" = 1 ] && [ -x "$bin/learner-sysalloc" ]; then
    run "mnist-$tag-sysalloc" "$bin/learner-sysalloc" mnist "$digits" "$out/$tag-sysalloc-mnist" \
        --epochs "$epochs_mnist" --batch-size "$batch" --lr 0.001 --metrics "$metrics"
    run "chargpt-$tag-sysalloc" "$bin/learner-sysalloc" chargpt "$sonnets" "$out/$tag-sysalloc-chargpt" \
        --epochs "$epochs_gpt" --batch-size "$batch" --lr 0.001 --block-size 32 --n-layer 2 --n-head 2 --n-embd 32 \
        --metrics "$metrics"
fi
