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
