"""Optuna's TPE with its SuccessiveHalvingPruner driving danling trials (benchmark case k).

Each Optuna trial is a danling run of the same config and search space as `danling sweep`: it is
trained rung by rung with `train --pause-at R` (and `--resume` from the second rung on), and after
each rung the trial reports its best score so far and asks the pruner whether to go on. So both
sides train the same model on the same data with the same code; only the sampler and the pruner
differ. Prints one JSON line: the best score of the trials trained to the end, the epochs trained,
how many trials finished and were pruned, and the best score against the epochs trained.

    python bench/search_optuna.py DANLING CONFIG PROJECT_ROOT --trials 27 --seed 1 --rungs 1,3,9
"""

import argparse
import json
import math
import os
import subprocess
import sys

import optuna


def best_until(run_dir, at, split, name, higher):
    """The run's best score among its results up to index `at`."""
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)["results"]
    scores = [
        record[split][name]
        for index, record in results.items()
        if int(index) <= at and record.get(split, {}).get(name) is not None
    ]
    if not scores:
        return math.nan
    return max(scores) if higher else min(scores)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("danling")
    parser.add_argument("config")
    parser.add_argument("root")
    parser.add_argument("--trials", type=int, default=27)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rungs", default="1,3,9")
    parser.add_argument("--reduction", type=int, default=3)
    parser.add_argument("--split", default="val")
    parser.add_argument("--score", default="accuracy")
    parser.add_argument("--no-prune", action="store_true")
    args = parser.parse_args()
    rungs = [int(r) for r in args.rungs.split(",")]
    higher = args.score not in ("loss", "error", "mse", "rmse", "mae")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.NopPruner()
        if args.no_prune
        else optuna.pruners.SuccessiveHalvingPruner(
            min_resource=rungs[0], reduction_factor=args.reduction
        )
    )
    study = optuna.create_study(
        direction="maximize" if higher else "minimize",
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=pruner,
    )
    epochs = 0
    curve = []  # [epochs trained, best score] each time a finished trial beat the best
    for number in range(args.trials):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 0.3, log=True)
        width = trial.suggest_categorical("width", [32, 64, 128, 256])
        decay = trial.suggest_float("weight_decay", 1e-6, 0.1, log=True)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        overrides = [
            f"--optim.lr={lr:.4g}",
            f"--model.hidden=[{width}]",
            f"--optim.weight_decay={decay:.4g}",
            f"--model.dropout={dropout:.4g}",
            f"--run_name=optuna-{number}",
            f"--project_root={args.root}",
            f"--seed={args.seed}",
            f"--epochs={rungs[-1]}",
            "--progress=false",
        ]
        run_dir, done, pruned, value = None, 0, False, math.nan
        for k, at in enumerate(rungs):
            command = [args.danling, "train", args.config, *overrides]
            if k > 0:
                command.append("--resume=true")
            if at < rungs[-1]:
                command.append(f"--pause-at={at}")
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"trial {number} failed: {out.stderr.strip().splitlines()[-1:]}")
            run_dir = out.stdout.strip().splitlines()[-1]
            epochs += at - done
            done = at
            value = best_until(run_dir, at, args.split, args.score, higher)
            if at < rungs[-1]:
                trial.report(value, at)
                if trial.should_prune():
                    pruned = True
                    break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
            if not curve or (value > curve[-1][1] if higher else value < curve[-1][1]):
                curve.append([epochs, value])
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_value if finished else math.nan
    print(
        json.dumps(
            {
                "best": best,
                "epochs": epochs,
                "finished": len(finished),
                "pruned": len(study.trials) - len(finished),
                "curve": curve,
                "optuna": optuna.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
