"""Defaults shared by the library and the binaries, each defined once (import-free, so the
binaries read them before TensorFlow loads).

Input resolution: a module is fed at its metadata's `input.resolution` (the size it was trained
at), else RESOLUTION, unless an override (`--resolution`) sets one size for all
(`tfexperts.hub.metadata.input_resolution`).
"""
RESOLUTION = 224  # BiT's, and the published hub experts'
EMBED_BATCH_SIZE = 64  # images per forward pass when embedding a task's images

# BiT's optimiser: SGD with momentum, lr 0.003 at batch 512 scaled linearly with the batch.
BASE_LR = 0.003
BASE_BATCH = 512
MOMENTUM = 0.9
# Training loop cadence (steps).
CHECKPOINT_EVERY = 100
LOG_EVERY = 10

# Expert selection (bin/vtab_eval --selection, bin/select_expert --proxy).
SELECTION_PROXIES = ("knn", "label_matching", "domain", "random")  # proxies that pick one expert
TOPK = "knn_topk"  # a strategy, not a scoring proxy: short fine-tunes of kNN's top experts
FINE_TUNE_SEVERAL = ("all_experts", "all_proxies")
SELECTIONS = SELECTION_PROXIES + (TOPK, "dat") + FINE_TUNE_SEVERAL
REPORT_PROXIES = SELECTION_PROXIES + (TOPK,)  # scored and recorded for every task

# Downstream fine-tuning modes (bin/vtab_eval --finetune, ProtocolConfig.finetune): what trains
# besides the new head. See tfexperts.transfer.modes.
FINETUNE_MODES = ("full", "patch", "adapter", "head")
FINETUNE = "full"
# Learning-rate sweeps at batch 512 per mode, in the VTAB-1k protocol and in the CPU-sized
# `--quick` preset. Full fine-tuning takes BiT's / VTAB's {0.01, 0.001}; a frozen backbone
# (scales and biases, adapters, a linear probe) needs about 10x larger rates: only a small part of
# the network moves, from zero-initialised parameters (the head, the adapters' second conv), so
# the same step moves the outputs much less; linear probes and patches are commonly swept about
# 10x above full fine-tuning's rates.
LEARNING_RATES = {"full": (0.01, 0.001), "patch": (0.1, 0.01), "adapter": (0.1, 0.01),
                  "head": (0.1, 0.01)}
QUICK_LEARNING_RATES = {"full": (0.1, 0.03), "patch": (1.0, 0.3), "adapter": (1.0, 0.3),
                        "head": (1.0, 0.3)}
