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


MODELS = {"mlp": mlp}


def build(args, n_features, classes, image_shape):
    """The model ``args.model`` names (see :data:`MODELS`)."""
    return MODELS[args.model](args, n_features, classes, image_shape)
