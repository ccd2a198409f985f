"""``python -m fusednn predict``: class labels (or probabilities) of a trained run's model for
the rows of an ``.npy`` file.

``--run`` names a run directory that ``train`` wrote (its ``final.npz``: the model, its
architecture and the fitted scaler) or a model file written by ``model.save``. The input rows
are raw features, as the data set gives them: the saved scaler is applied first.
"""

import argparse
import os

import numpy as np

from fusednn.cli._args import UsageError, _positive_int


def add_parser(sub):
    """The ``predict`` subcommand's parser, added to the subparsers ``sub``."""
    p = sub.add_parser("predict", help="predict the classes of the rows of an .npy file with a trained run's model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True,
                   help="a run directory written by train (its final.npz), or a model file written by model.save")
    p.add_argument("--input", required=True, help="an .npy file of raw input rows, shape (n, features)")
    p.add_argument("--output", required=True, help="the .npy file to write: int64 labels of shape (n,)")
    p.add_argument("--proba", action="store_true",
                   help="write the class probabilities, shape (n, classes), instead of the labels")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="rows per forward pass")
    return p


def model_path(run):
    """The model file that ``--run`` names: a run directory's final.npz, or the file itself."""
    if os.path.isdir(run):
        path = os.path.join(run, "final.npz")
        if not os.path.isfile(path):
            raise UsageError(f"--run {run}: holds no final.npz (train writes it when the run ends; an unfinished "
                             "run's epoch-NNNN.npz files can be read with fusednn.load in Python)")
        return path
    if not os.path.isfile(run):
        raise UsageError(f"--run {run}: no such run directory or model file")
    return run


def load_run(run):
    """(checkpoint, model) of ``--run``; UsageError for a file that holds no loadable model."""
    from fusednn import checkpoint, serialize
    path = model_path(run)
    try:
        ckpt = checkpoint.load(path)
        return ckpt, serialize.model_of(ckpt)
    except checkpoint.CheckpointError as e:
        raise UsageError(f"--run {run}: {e}") from None


def read_array(flag, path):
    """The array of the .npy file ``path`` (read without pickle); UsageError otherwise."""
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"{flag} {path}: not a readable .npy file: {e}") from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise UsageError(f"{flag} {path}: expected an .npy file of one array, got an .npz archive")
    return a


def run(args):
    """Run ``predict`` with the parsed ``args``; the exit status."""
    from fusednn import serialize
    _, model = load_run(args.run)
    x = read_array("--input", args.input)
    try:
        out = (serialize.predict_proba if args.proba else serialize.predict)(model, x, args.batch_size)
    except (TypeError, ValueError) as e:  # wrong dtype, shape or number of features
        raise UsageError(f"--input {args.input}: {e}") from None
    np.save(args.output, out)
    what = "class probabilities" if args.proba else "labels"
    print(f"{len(out)} {what} of {model_path(args.run)} -> {args.output}")
    return 0
