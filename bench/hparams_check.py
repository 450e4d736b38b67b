#!/usr/bin/env python3
"""Reads the HParams summaries of every run under a project root with TensorBoard's own reader:
`pip install tensorboard && python3 bench/hparams_check.py experiments`. Prints, per run, its group, two
hyperparameters, the session's end status (1: success) and how many best/ scalars it has."""
import sys, glob
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2
for run in sorted(glob.glob(sys.argv[1] + "/*/tensorboard")):
    acc = event_accumulator.EventAccumulator(run, size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    best = [t for t in acc.Tags()["scalars"] + acc.Tags()["tensors"] if t.startswith("best/")]
    print(run.split("/")[-2][:40], "group", start.group_name, "lr", hp.get("optim.lr"), "hidden", hp.get("model.hidden"), "status", end.status, "best tags", len(best))
