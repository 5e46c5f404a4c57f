"""tfds builders of the offline datasets shipped with tfexperts; importing this registers them.

After `import tfexperts.data.builders`, `tfds.builder("tfexperts_shapes/tiny", data_dir=...)` and
`tfds.load(...)` work like for any tfds dataset (see `tfexperts.data.offline` to build them).
"""
from tfexperts.data.builders import digits  # noqa: F401  (registers the builders)
from tfexperts.data.builders import shapes  # noqa: F401
from tfexperts.data.builders import taxonomy  # noqa: F401

NAMES = ("tfexperts_shapes", "tfexperts_shapes_fine", "tfexperts_shapes_mixed",
         "tfexperts_shapes_count", "tfexperts_digits")
