"""2-D convolution (bias and ReLU fused around the GEMM) and pooling on NCHW arrays.

``stride``, ``padding``, ``dilation`` and ``kernel_size`` are an integer or a pair (H, W) of
integers. Shapes, rules and the scratch bound: docs/ops.md ("conv").
"""

from fusednn import _checks
from fusednn._backend import backend_for


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, activation=None, out=None):
    """``y = act(conv2d(x, w) + b)``, as ``torch.nn.functional.conv2d`` followed by the activation.

    Args:
        x: input, shape (N, C_in, H, W), float32 or float64 (any strides).
        w: weights, shape (C_out, C_in / groups, kH, kW) (torch's layout), same dtype.
        b: bias, shape (C_out,), or None.
        stride: >= 1; padding: >= 0 (any size; zeros); dilation: >= 1.
        groups: C_in and C_out are split into this many groups, each convolved on its own
            (groups = C_in = C_out is a depthwise convolution).
        activation: None or ``"relu"`` (in the GEMM's epilogue).
        out: optional C-contiguous array of shape (N, C_out, OH, OW), written in place and
            returned; OH = (H + 2 padding - dilation (kH - 1) - 1) // stride + 1 (OW alike).

    Returns:
        y, shape (N, C_out, OH, OW).
    """
    return backend_for(x=x, w=w, b=b, out=out).conv2d(x, w, b, stride, padding, dilation, groups, activation, out)


def conv2d_backward(dy, x, w, y=None, *, stride=1, padding=0, dilation=1, groups=1, activation=None, bias=True,
                    input_grad=True, out=None):
    """Gradients of :func:`conv2d`: ``(dx, dw, db)``.

    Args:
        dy: gradient with respect to y, shape (N, C_out, OH, OW).
        x, w: the forward inputs; stride, padding, dilation, groups, activation: the forward's.
        y: the forward output; required when ``activation`` is not None (its mask).
        bias: whether the forward had a bias; if False, ``db`` is None.
        input_grad: whether to compute ``dx``; if False (a first layer), ``dx`` is None and
            its GEMM and col2im are skipped.
        out: optional tuple ``(dx, dw, db)`` of C-contiguous arrays (or None entries) written in
            place.

    Returns:
        ``(dx, dw, db)`` with the shapes of x, w and (C_out,).
    """
    bias = _checks.flag("bias", bias)
    input_grad = _checks.flag("input_grad", input_grad)
    return backend_for(dy=dy, x=x, w=w, y=y, out=out).conv2d_backward(
        dy, x, w, y, stride, padding, dilation, groups, activation, bias, input_grad, out)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max pooling of (N, C, H, W) input, as ``torch.nn.functional.max_pool2d(...,
    return_indices=True)`` (floor mode, no dilation).

    ``stride`` defaults to ``kernel_size``; ``padding`` is at most ``kernel_size // 2`` and never
    wins a window (the padding is -inf). Ties keep the first maximum in row-major window order;
    a NaN wins (the last NaN of a window), as torch's CPU kernel.

    Returns:
        ``(y, indices)``: y of shape (N, C, OH, OW) and int64 indices ``ih * W + iw`` of each
        maximum in its input plane.
    """
    return backend_for(x=x).max_pool2d(x, kernel_size, stride, padding)


def max_pool2d_backward(dy, indices, input_shape):
    """Gradient of :func:`max_pool2d`: dx of shape ``input_shape`` (N, C, H, W), zero except at
    the indices, where the gradients of the outputs that chose them are added."""
    return backend_for(dy=dy, indices=indices).max_pool2d_backward(dy, indices, input_shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling, as ``torch.nn.functional.avg_pool2d`` (floor mode): the window's sum over
    the input positions divided by kH * kW (``count_include_pad=True``: the zero padding counts)
    or by the number of input positions in the window."""
    count_include_pad = _checks.flag("count_include_pad", count_include_pad)
    return backend_for(x=x).avg_pool2d(x, kernel_size, stride, padding, count_include_pad)


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Gradient of :func:`avg_pool2d`: dx of shape ``input_shape``."""
    count_include_pad = _checks.flag("count_include_pad", count_include_pad)
    return backend_for(dy=dy).avg_pool2d_backward(dy, input_shape, kernel_size, stride, padding,
                                                  count_include_pad)


def global_avg_pool2d(x):
    """The mean of every (H, W) plane: (N, C, H, W) -> (N, C), ``x.mean(axis=(2, 3))``."""
    return backend_for(x=x).global_avg_pool2d(x)


def global_avg_pool2d_backward(dy, input_shape):
    """Gradient of :func:`global_avg_pool2d`: ``dy[:, :, None, None] / (H * W)`` broadcast to
    ``input_shape``."""
    return backend_for(dy=dy).global_avg_pool2d_backward(dy, input_shape)
