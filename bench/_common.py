"""What every bench prints beside its numbers: the BLAS kernel NumPy runs."""


def blas_kernel():
  """The BLAS library, kernel and thread count NumPy uses (threadpoolctl), as one line."""
  import numpy  # pylint: disable=unused-import,g-import-not-at-top  (loads the BLAS to report)
  try:
    import threadpoolctl  # pylint: disable=g-import-not-at-top
  except ImportError:
    return "unknown (threadpoolctl not installed)"
  return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
                   f"{i.get('num_threads')} threads"
                   for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas")
