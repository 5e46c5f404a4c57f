"""BiT model presets as data, importable without Keras (the binaries check --model early)."""

# Presets as data: name -> constructor arguments.
PRESETS = {
    "r26x1": {"units": (2, 2, 2, 2), "width": 1},
    "r50x1": {"units": (3, 4, 6, 3), "width": 1},
    "r50x3": {"units": (3, 4, 6, 3), "width": 3},
    "r101x1": {"units": (3, 4, 23, 3), "width": 1},
    "r101x3": {"units": (3, 4, 23, 3), "width": 3},
    "r152x1": {"units": (3, 8, 36, 3), "width": 1},
    "r152x4": {"units": (3, 8, 36, 3), "width": 4},
    # For tests and the CPU demo: one unit per block, a quarter of the width, 4 GroupNorm groups.
    "tiny": {"units": (1, 1, 1, 1), "width": 0.25, "groups": 4},
}
