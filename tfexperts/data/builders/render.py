"""Procedural rendering of the shapes datasets with numpy and PIL.

Every image is a function of a `numpy.random.Generator` only, so the same seed gives the same
pixels. Scenes are drawn on a supersampled float canvas (anti-aliasing), then box-downsampled to
the output size, with Gaussian pixel noise added last. Variation: background (solid, gradient,
smooth colour blobs), object colour (kept in contrast with what lies under it), size, position,
rotation (free for `polygon`/`round`, near-upright for `glyph`/`symbol`, whose identity depends
on orientation), shear and stroke width for glyphs, pattern period and orientation for textures.
"""
import math

import numpy as np
from PIL import Image
from PIL import ImageDraw

from tfexperts.data.builders import taxonomy

# Seven-segment layout on a unit box (x in [-1, 1], y in [-1, 1], y down):
# a top, b top-right, c bottom-right, d bottom, e bottom-left, f top-left, g middle.
_SEGMENTS = {
    "a": ((-1, -1), (1, -1)), "b": ((1, -1), (1, 0)), "c": ((1, 0), (1, 1)),
    "d": ((-1, 1), (1, 1)), "e": ((-1, 0), (-1, 1)), "f": ((-1, -1), (-1, 0)),
    "g": ((-1, 0), (1, 0)),
}
_DIGIT_SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc", "5": "afgcd",
    "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}
_MIN_CONTRAST = 80.0  # luminance difference between an object and what lies under it


def supersample_factor(size):
  """Canvas pixels per output pixel: enough for a ~96-128 px canvas, between 2 and 3."""
  return int(min(3, max(2, math.ceil(96 / size))))


def _luminance(rgb):
  return float(np.dot(rgb, (0.299, 0.587, 0.114)))


def _contrasting_color(rng, under):
  """A random RGB colour whose luminance differs from `under`'s by at least _MIN_CONTRAST."""
  target = _luminance(under)
  for _ in range(30):
    color = rng.uniform(0, 255, size=3)
    if abs(_luminance(color) - target) >= _MIN_CONTRAST:
      return color
  return np.full(3, 0.0 if target > 127 else 255.0)


def _background(rng, canvas):
  kind = rng.integers(3)
  if kind == 0:  # solid
    return np.broadcast_to(rng.uniform(0, 255, 3), (canvas, canvas, 3)).astype(np.float32)
  if kind == 1:  # linear gradient in a random direction
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    coords = (np.arange(canvas) + 0.5) / canvas - 0.5
    t = np.clip(np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None] + 0.5, 0, 1)
    return (a * (1 - t[..., None]) + b * t[..., None]).astype(np.float32)
  grid = rng.integers(2, 5)  # smooth colour blobs: a tiny random image, bilinearly upsampled
  small = Image.fromarray(rng.integers(0, 256, (grid, grid, 3), dtype=np.uint8))
  return np.asarray(small.resize((canvas, canvas), Image.BILINEAR), np.float32)


def _transform(points, center, scale, angle, sx=1.0, sy=1.0, shear=0.0):
  """Unit-coordinate points -> canvas coordinates: scale (sx, sy), shear x by y, rotate, place."""
  p = np.asarray(points, np.float64) * (sx, sy)
  p = np.stack([p[:, 0] + shear * p[:, 1], p[:, 1]], axis=1)
  c, s = math.cos(angle), math.sin(angle)
  p = p @ np.array([[c, s], [-s, c]])
  return p * scale + center


def _regular_polygon(n, rng, start=-np.pi / 2, jitter=0.06):
  t = start + 2 * np.pi * np.arange(n) / n
  r = 1 + rng.uniform(-jitter, jitter, n)
  return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _circle_points(n=64):
  t = 2 * np.pi * np.arange(n) / n
  return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(rng):
  inner = rng.uniform(0.38, 0.5)
  t = -np.pi / 2 + np.pi * np.arange(10) / 5
  r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
  return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rect(x0, y0, x1, y1):
  return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)


def _mask(canvas, fills=(), holes=(), lines=()):
  """Rasterizes canvas-coordinate polygons (minus holes) and thick round-capped lines to [0, 1]."""
  image = Image.new("L", (canvas, canvas), 0)
  draw = ImageDraw.Draw(image)
  for polygon in fills:
    draw.polygon([tuple(p) for p in polygon], fill=255)
  for polygon in holes:
    draw.polygon([tuple(p) for p in polygon], fill=0)
  for p0, p1, width in lines:
    draw.line([tuple(p0), tuple(p1)], fill=255, width=max(1, int(round(width))))
    for x, y in (p0, p1):
      r = width / 2
      draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
  return np.asarray(image, np.float32) / 255.0


def _shape_mask(leaf, rng, canvas, center, scale):
  """Coverage mask of a `polygon`, `round`, `symbol` or `glyph` leaf centred at `center`."""
  branch = taxonomy.branch_of(leaf)
  if branch in ("polygon", "round"):
    angle = rng.uniform(0, 2 * np.pi)
  elif branch == "glyph":
    angle = rng.uniform(-1, 1) * np.radians(25)
  else:
    angle = rng.uniform(-1, 1) * np.radians(20)
  place = lambda pts, **kw: _transform(pts, center, scale, angle, **kw)
  corners = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
  if leaf in corners:
    return _mask(canvas, [place(_regular_polygon(corners[leaf], rng))])
  if leaf == "star":
    return _mask(canvas, [place(_star(rng))])
  if leaf == "circle":
    return _mask(canvas, [place(_circle_points())])
  if leaf == "ellipse":
    return _mask(canvas, [place(_circle_points(), sy=rng.uniform(0.45, 0.65))])
  if leaf == "ring":
    inner = rng.uniform(0.45, 0.65)
    return _mask(canvas, [place(_circle_points())], [place(_circle_points() * inner)])
  if leaf == "crescent":
    offset, inner = rng.uniform(0.35, 0.55), rng.uniform(0.8, 0.95)
    return _mask(canvas, [place(_circle_points())],
                 [place(_circle_points() * inner + (offset, 0))])
  if leaf == "semicircle":
    t = np.linspace(0, np.pi, 33)
    return _mask(canvas, [place(np.stack([np.cos(t), np.sin(t) - 0.5], axis=1))])
  if branch == "glyph":
    half_width = rng.uniform(0.45, 0.65)
    shear = rng.uniform(-0.25, 0.25)
    width = rng.uniform(0.22, 0.32) * scale
    jitter = lambda: rng.uniform(-0.05, 0.05, 2)
    lines = []
    for segment in _DIGIT_SEGMENTS[leaf.split("_")[1]]:
      ends = np.array(_SEGMENTS[segment], np.float64) * 0.85 + np.stack([jitter(), jitter()])
      p0, p1 = place(ends, sx=half_width, shear=shear)
      lines.append((p0, p1, width))
    return _mask(canvas, lines=lines)
  turn = rng.integers(4) * np.pi / 2  # symbols: one of four orientations, then jitter
  place = lambda pts: _transform(pts, center, scale, angle + turn)
  bar = rng.uniform(0.2, 0.3)
  if leaf in ("plus", "cross"):
    if leaf == "cross":
      place = lambda pts: _transform(pts, center, scale, angle + np.pi / 4)
    return _mask(canvas, [place(_rect(-1, -bar, 1, bar)), place(_rect(-bar, -1, bar, 1))])
  if leaf == "arrow":
    head = rng.uniform(0.55, 0.75)
    return _mask(canvas, [place(_rect(-1, -bar, 0.1, bar)),
                          place(np.array([(0.05, -head), (1, 0), (0.05, head)]))])
  if leaf == "chevron":
    thick = rng.uniform(0.4, 0.55)
    return _mask(canvas, [place(np.array([(-0.7, -0.9), (-0.7 + thick, -0.9), (0.7, 0),
                                          (-0.7 + thick, 0.9), (-0.7, 0.9), (0.7 - thick, 0)]))])
  if leaf == "hourglass":
    neck = rng.uniform(0.08, 0.16)
    return _mask(canvas, [place(np.array([(-0.8, -0.9), (0.8, -0.9), (neck, 0), (0.8, 0.9),
                                          (-0.8, 0.9), (-neck, 0)]))])
  raise ValueError(f"No drawing for leaf {leaf!r}.")


def _texture_masks(leaf, rng, canvas, center, scale, full):
  """Returns (region, pattern) masks of a texture leaf; the pattern lies inside the region."""
  ys, xs = np.mgrid[0:canvas, 0:canvas].astype(np.float32) + 0.5
  if full:
    region = np.ones((canvas, canvas), np.float32)
    period = rng.uniform(1 / 8, 1 / 4.5) * canvas
  else:
    angle = rng.uniform(0, 2 * np.pi)
    shape = _circle_points() if rng.integers(2) else _rect(-0.85, -0.85, 0.85, 0.85)
    region = _mask(canvas, [_transform(shape, center, scale, angle)])
    period = rng.uniform(0.35, 0.55) * scale
  theta = rng.uniform(0, np.pi)
  u = ((xs - center[0]) * np.cos(theta) + (ys - center[1]) * np.sin(theta)) / period
  v = (-(xs - center[0]) * np.sin(theta) + (ys - center[1]) * np.cos(theta)) / period
  frac = lambda a: a - np.floor(a)
  if leaf == "stripes":
    pattern = frac(u) < 0.5
  elif leaf == "checker":
    pattern = (np.floor(u) + np.floor(v)) % 2 == 0
  elif leaf == "dots":
    radius = rng.uniform(0.22, 0.32)
    pattern = (frac(u) - 0.5) ** 2 + (frac(v) - 0.5) ** 2 < radius ** 2
  elif leaf == "grid":
    width = rng.uniform(0.18, 0.28)
    pattern = (frac(u) < width) | (frac(v) < width)
  elif leaf == "waves":
    amplitude, wavelength = rng.uniform(0.25, 0.5), rng.uniform(1.5, 3.0)
    pattern = frac(u + amplitude * np.sin(2 * np.pi * v / wavelength)) < 0.5
  else:
    raise ValueError(f"No texture for leaf {leaf!r}.")
  return region, region * pattern.astype(np.float32)


def _paint(image, mask, rng):
  """Composites a contrasting colour over `image` where `mask` covers it (in place)."""
  rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
  if not rows.size:
    return
  window = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # only the object's bounding box
  m, patch = mask[window][..., None], image[window]
  under = (patch * m).sum((0, 1)) / m.sum()
  color = _contrasting_color(rng, under).astype(np.float32)
  patch += m * (color - patch)


def draw_object(image, leaf, rng, center, scale, full_texture=False):
  """Draws one leaf on a float canvas `image` ([c, c, 3], 0..255) in place.

  `center` is in canvas pixels, `scale` is the object's radius in canvas pixels. Textures fill
  a disc or square region of that radius, or the whole canvas when `full_texture`.
  """
  canvas = image.shape[0]
  center = np.asarray(center, np.float64)
  if taxonomy.branch_of(leaf) == "texture":
    region, pattern = _texture_masks(leaf, rng, canvas, center, scale, full_texture)
    _paint(image, region, rng)
    _paint(image, pattern, rng)
  else:
    _paint(image, _shape_mask(leaf, rng, canvas, center, scale), rng)


def _finish(image, size, rng):
  """Box-downsamples the canvas to `size`, adds Gaussian noise, returns uint8 [size, size, 3]."""
  canvas = Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
  small = np.asarray(canvas.resize((size, size), Image.BOX), np.float32)
  small = small + rng.normal(0, rng.uniform(0, 8), small.shape).astype(np.float32)
  return np.clip(np.round(small), 0, 255).astype(np.uint8)


def render_single(leaf, size, rng):
  """Renders one object of class `leaf` on a random background; returns uint8 [size, size, 3]."""
  canvas = size * supersample_factor(size)
  image = _background(rng, canvas).copy()
  radius = rng.uniform(0.24, 0.42)
  center = rng.uniform(radius, 1 - radius, 2) * canvas
  full = taxonomy.branch_of(leaf) == "texture" and rng.uniform() < 0.4
  draw_object(image, leaf, rng, center, radius * canvas, full_texture=full)
  return _finish(image, size, rng)


def render_count(count, size, rng, leaves=taxonomy.UPSTREAM_CLASSES):
  """Renders `count` small non-overlapping objects of random `leaves`; returns uint8 image."""
  canvas = size * supersample_factor(size)
  image = _background(rng, canvas).copy()
  placed = []
  while len(placed) < count:  # rejection sampling; restart on the (rare) dead end
    for _ in range(200):
      radius = rng.uniform(0.08, 0.12)
      center = rng.uniform(radius, 1 - radius, 2)
      if all(np.hypot(*(center - c)) > radius + r + 0.02 for c, r in placed):
        placed.append((center, radius))
        break
    else:
      placed = []
  for center, radius in placed:
    leaf = leaves[rng.integers(len(leaves))]
    draw_object(image, leaf, rng, center * canvas, radius * canvas)
  return _finish(image, size, rng)
