"""Row gathers: the minibatch copy of a training loop."""

from fusednn._backend import backend_for


def gather_rows(x, index, *, out=None):
    """``x[index]`` for an integer array ``index`` of rows of ``x`` (negative values count from
    the end, as in NumPy), copied in parallel: the minibatch ``x[idx]`` of a shuffled epoch.

    Args:
        x: (N, ...) float32 or float64.
        index: 1-D integer array of values in [-N, N).
        out: optional C-contiguous array of shape (len(index), ...) and x's dtype.
    """
    return backend_for(x=x, index=index, out=out).gather_rows(x, index, out)
