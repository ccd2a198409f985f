"""``python -m fusednn demo NAME``: run one of the course's experiments (:mod:`fusednn.demos`).

``demo list`` lists them with their claims; ``demo all`` runs every one. Each demo prints its
table, the course's claim and what was measured, and writes ``NAME.csv``, ``NAME.md`` and PNG
figures (with matplotlib) to ``<--out>/NAME/``.
"""

import argparse
import os
import textwrap
import time

from fusednn.cli._args import _positive_int


def _demo_name(text):
    from fusednn import demos
    if text in ("list", "all") or text in demos.DEMOS:
        return text
    raise argparse.ArgumentTypeError(f"expected list, all or one of {', '.join(demos.DEMOS)}, got {text!r}")


def add_parser(sub):
    """The ``demo`` subcommand's parser, added to the subparsers ``sub``."""
    d = sub.add_parser("demo", help="run one of the course's experiments (demo list shows them)",
                       description="Run one of the course's experiments: it prints a table, the course's claim and "
                                   "what was measured, and writes a CSV, a markdown table and PNG figures.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("name", type=_demo_name, metavar="NAME", help="a demo's name, 'list' or 'all'")
    d.add_argument("--quick", action="store_true", help="smaller runs that finish in a few seconds")
    d.add_argument("--out", default=os.path.join("runs", "demo"),
                   help="the results go to OUT/NAME/ (NAME.csv, NAME.md and the figures)")
    d.add_argument("--dpi", type=_positive_int, default=100, help="resolution of the PNG figures")
    return d


def run(args):
    from fusednn import demos
    if args.name == "list":
        for name in demos.DEMOS:
            module = demos.get(name)
            print(f"{name}: {module.TITLE}")
            print(textwrap.indent(textwrap.fill(module.CLAIM, 96), "    "))
        return 0
    names = list(demos.DEMOS) if args.name == "all" else [args.name]
    started, results = time.perf_counter(), []
    for name in names:
        result = demos.run(name, quick=args.quick, out_dir=os.path.join(args.out, name), dpi=args.dpi)
        results.append(result)
        print(result.text(), end="\n\n", flush=True)
    if len(results) > 1:
        print("demo              claim's direction seen   seconds")
        for r in results:
            print(f"{r.name:<17} {'yes' if r.holds else 'no':<24} {r.seconds:7.1f}")
        print(f"all {len(results)} demos: {time.perf_counter() - started:.1f} s")
    return 0
