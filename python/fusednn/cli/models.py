"""The models ``python -m fusednn train --model NAME`` builds.

:data:`MODELS` maps each name to a builder ``build(args, n_features, classes, image_shape)``
that returns a fresh model for the parsed ``train`` arguments ``args``: ``n_features`` is the
width of the (flat) input rows, ``classes`` the number of classes, and ``image_shape`` the
``(channels, height, width)`` the rows are images of, or None for a data set of plain features.
A family that adds a model (a CNN, a recurrent network) adds its builder here.
"""

__all__ = ["MODELS", "build"]


def mlp(args, n_features, classes, image_shape):
    """The MLP of ``--hidden``, ``--activation``, ``--norm``, ``--dropout`` and ``--input-dropout``."""
    from fusednn import nn
    return nn.MLP([n_features, *args.hidden, classes], activation=args.activation,
                  norm=None if args.norm == "none" else args.norm, dropout=args.dropout,
                  input_dropout=args.input_dropout, seed=args.seed)


def cnn(args, n_features, classes, image_shape):
    """A CNN of the image rows (digits 1x8x8, MNIST 1x28x28): two blocks of a 3x3 "same"
    convolution (32, then 64 channels), batch norm with the ReLU fused (``--norm batch``, the
    default; ``--norm none``: the ReLU in the convolution's epilogue) and 2x2 max pooling, then
    dropout ``--dropout`` and a linear head. The flat rows are reshaped to images first.
    ``--hidden``, ``--activation`` (ReLU only) and ``--input-dropout`` do not apply."""
    from fusednn import nn
    from fusednn.cli._args import UsageError
    if image_shape is None:
        raise UsageError(f"--model cnn: needs an image data set (digits or mnist:<directory>), got {args.dataset}")
    if args.norm == "layer":
        raise UsageError("--model cnn: --norm is batch or none (no layer norm over channel maps)")
    if args.activation != "relu":
        raise UsageError(f"--model cnn: the activation is ReLU, got --activation {args.activation}")
    if args.input_dropout:
        raise UsageError("--model cnn: --input-dropout does not apply (use --dropout for the head)")
    return nn.CNN(image_shape, channels=(32, 64), classes=classes, norm=None if args.norm == "none" else "batch",
                  dropout=args.dropout, seed=args.seed)


def _recurrent(kind):
    def build(args, n_features, classes, image_shape):
        from fusednn import nn
        from fusednn.cli._args import UsageError
        if image_shape is None or image_shape[0] != 1:
            raise UsageError(f"--model {kind}: needs a single-channel image data set (digits or mnist:<directory>), "
                             f"read one image row per step; got {args.dataset}")
        steps, features = image_shape[1], image_shape[2]
        hidden = args.hidden[0]
        layer = (nn.LSTM if kind == "lstm" else nn.GRU)(
            features, hidden, batch_first=True, input_dropout=args.input_dropout, recurrent_dropout=args.dropout,
            rng=args.seed)
        layer.input_grad = False  # the first layer: no gradient of the pixels is needed
        model = nn.Sequential(nn.AsSequence(steps, features), layer, nn.LastStep(),
                              nn.Linear(hidden, classes, rng=args.seed + 1)).seed(args.seed)
        model.sizes = [(steps, features), f"{kind}({hidden})", classes]  # for the summary line, as MLP.sizes
        return model
    build.__name__ = build.__qualname__ = kind
    build.__doc__ = (f"A one-layer {kind.upper()} over the image rows (a digit: 8 steps of 8 features), the last "
                     "step's state into a linear head: ``--hidden``'s first size is the hidden size, ``--dropout`` "
                     "the variational recurrent dropout, ``--input-dropout`` the variational dropout of the pixels "
                     "(one mask per image). ``--norm`` and ``--activation`` do not apply.")
    return build


lstm = _recurrent("lstm")
gru = _recurrent("gru")

MODELS = {"mlp": mlp, "cnn": cnn, "lstm": lstm, "gru": gru}


def build(args, n_features, classes, image_shape):
    """The model ``args.model`` names (see :data:`MODELS`)."""
    return MODELS[args.model](args, n_features, classes, image_shape)
