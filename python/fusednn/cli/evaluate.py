"""``python -m fusednn evaluate``: the loss and accuracy of a trained run's model.

By default on the test split of the data set the run was trained on (the same split, seed and
loss as ``train``'s final line, so the numbers agree), through the scaler saved with the model;
``--split`` picks another split, and ``--input``/``--labels`` evaluate on rows of one's own.
"""

import argparse

import numpy as np

from fusednn.cli._args import UsageError, _positive_int
from fusednn.cli.predict import load_run, model_path, read_array


def add_parser(sub):
    """The ``evaluate`` subcommand's parser, added to the subparsers ``sub``."""
    p = sub.add_parser("evaluate", help="the loss and accuracy of a trained run's model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory written by train (its final.npz)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="the split of the run's data set (its --dataset and --seed)")
    p.add_argument("--input", default=None,
                   help="an .npy file of raw input rows to evaluate on instead of --split (default: none)%(default).0s")
    p.add_argument("--labels", default=None,
                   help="an .npy file of the --input rows' integer labels (default: none)%(default).0s")
    p.add_argument("--batch-size", type=_positive_int, default=1024, help="rows per forward pass")
    return p


def run(args):
    """Run ``evaluate`` with the parsed ``args``; the exit status."""
    from fusednn import serialize
    from fusednn import train as fit_mod
    from fusednn.nn.losses import SoftmaxCrossEntropy
    ckpt, model = load_run(args.run)
    saved = ckpt.extra.get("args") if isinstance(ckpt.extra.get("args"), dict) else {}
    if (args.input is None) != (args.labels is None):
        raise UsageError("--input and --labels go together")
    if args.input is not None:
        x, y = read_array("--input", args.input), read_array("--labels", args.labels)
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise UsageError(f"--labels {args.labels}: expected {len(x)} integer labels (shape ({len(x)},)), got "
                             f"dtype {y.dtype} and shape {y.shape}")
        what = f"{args.input}"
    else:
        if "dataset" not in saved or "seed" not in saved:
            raise UsageError(f"--run {args.run}: the model file does not record the data set it was trained on "
                             "(a file from model.save); give --input and --labels")
        from fusednn.cli.train import _splits
        try:
            splits = _splits(saved["dataset"], saved["seed"])
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--run {args.run}: its data set {saved['dataset']}: {e}") from None
        x, y = splits[("train", "val", "test").index(args.split)]
        what = f"the {args.split} split of {saved['dataset']}"
    loss = SoftmaxCrossEntropy(label_smoothing=saved.get("label_smoothing", 0.0))
    try:
        classes = int(model.predict_proba(x[:1]).shape[1])
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise UsageError(f"labels: expected classes 0..{classes - 1} (the model's), got {y.min()}..{y.max()}")
        result = fit_mod.evaluate(model, (serialize.network_input(model, x), y), loss, batch_size=args.batch_size)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--input {args.input}: {e}" if args.input else str(e)) from None
    label = "" if args.input is not None else f"{args.split} "
    print(f"{label}accuracy {result['accuracy']:.2%}, {label}loss {result['loss']:.4f} | {len(y)} samples of {what} | "
          f"{model_path(args.run)}")
    return 0
