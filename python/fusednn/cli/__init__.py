"""``python -m fusednn COMMAND``: the command line.

Each subcommand is a module of this package with ``add_parser(subparsers)`` and
``run(args) -> exit status``; :data:`COMMANDS` lists them in the order ``--help`` shows.
"""

import argparse
import importlib
import sys

from fusednn.cli._args import UsageError

COMMANDS = ("train", "demo", "predict", "evaluate", "hpo")

__all__ = ["main", "build_parser", "UsageError", "COMMANDS"]


def _command_module(name):
    return importlib.import_module(f"fusednn.cli.{name.replace('-', '_')}")


def build_parser():
    """The parser of ``python -m fusednn``, with every subcommand of :data:`COMMANDS`."""
    p = argparse.ArgumentParser(prog="python -m fusednn", description="fusednn: fused kernels for training networks")
    from fusednn import __version__
    p.add_argument("--version", action="version", version=f"fusednn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        _command_module(name).add_parser(sub)
    return p


def main(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand; its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from fusednn.train import NonFiniteLossError
    prog = f"{parser.prog} {args.command}"
    try:
        return _command_module(args.command).run(args)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"{prog}: error: the training loss is {e.loss} at epoch {e.epoch}, batch {e.batch} (after {e.step} "
              "updates): training diverged (a learning rate too large?); --on-nonfinite continue trains on",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
