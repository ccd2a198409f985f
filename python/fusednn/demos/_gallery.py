"""Regenerate the gallery: ``python -m fusednn.demos._gallery [--docs DOCS]``.

Runs every demo in full (not quick) mode, copies each demo's figure, reduced to a 64-colour
palette PNG, to ``DOCS/demos/NAME.png`` and writes ``DOCS/demos.md`` with the command, the claim,
the figure and the measured table of each. Needs matplotlib and Pillow (a matplotlib dependency).
"""

import argparse
import os
import platform
import tempfile
import time

from fusednn import demos

HEADER = """# Gallery: the course's experiments

Each experiment of the course is one command, `python -m fusednn demo NAME` (`python -m fusednn demo list`
lists them, `demo all` runs every one, `--quick` makes each finish in a few seconds). A demo prints its table,
the course's claim and what it measured, and writes `NAME.csv`, `NAME.md` and its PNG figures to
`runs/demo/NAME/` (`--out DIR` writes to `DIR/NAME/`). The figures need matplotlib
(`pip install "fusednn[plot]"`); without it the tables still print.

The tools behind the demos are part of the library, in `fusednn.diagnostics`; each leaves the model as it
found it (parameters, gradients, batch-norm statistics, modes, the dropout stream):

```python
from fusednn import diagnostics
stats = diagnostics.activation_statistics(model, x)   # per layer: mean, std, zero_fraction, min, max, histogram
norms = diagnostics.gradient_norms(model, x, y)       # {{layer name: gradient L2 norm}} (by="parameter" too)
alphas, losses = diagnostics.landscape_1d(init_model, x, y, end=trained_model)  # linear interpolation
alphas, betas, losses = diagnostics.landscape_2d(model, x, y)  # filter-normalized random plane (Li et al. 2018)
mean, variance = diagnostics.mc_dropout_predict(model, x, samples=100)  # MC dropout
```

The tables and figures below come from one full run (`python -m fusednn.demos._gallery`, which runs
`demo all` and copies the figures here) on {machine}: all {count} demos took {seconds:.0f} s.
"""


def _compress(src, dst):
    from PIL import Image
    with Image.open(src) as image:
        image.convert("RGB").quantize(colors=64).save(dst, optimize=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fusednn.demos._gallery", description=__doc__.splitlines()[0])
    p.add_argument("--docs", default="docs", help="the docs folder: writes DOCS/demos.md and DOCS/demos/*.png")
    p.add_argument("--dpi", type=int, default=70)
    args = p.parse_args(argv)
    figures = os.path.join(args.docs, "demos")
    os.makedirs(figures, exist_ok=True)
    sections, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in demos.names():
            result = demos.run(name, out_dir=os.path.join(tmp, name), dpi=args.dpi)
            print(result.text(), end="\n\n", flush=True)
            png = next(f for f in result.files if f.endswith(".png"))
            _compress(png, os.path.join(figures, f"{name}.png"))
            verdict = "yes" if result.holds else "**no**"
            sections.append("\n".join([
                f"## {name}: {result.title}", "", "```", f"python -m fusednn demo {name}", "```", "",
                f"**Claim (the course):** {result.claim}", "", f"![{name}](demos/{name}.png)", "",
                result.markdown_table(), "", f"**Measured:** {result.measured}.", "",
                f"**Claim's direction seen:** {verdict} ({result.check}). Run time: {result.seconds:.1f} s.", ""]
                + [f"Note: {n}" for n in result.notes] + ([""] if result.notes else [])))
    machine = f"{platform.machine()} {os.cpu_count()} CPUs, shared with other jobs"
    text = HEADER.format(machine=machine, count=len(sections), seconds=time.perf_counter() - started)
    with open(os.path.join(args.docs, "demos.md"), "w") as f:
        f.write(text + "\n" + "\n".join(sections))
    print(f"wrote {os.path.join(args.docs, 'demos.md')} and {len(sections)} figures in {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
