"""What every demo shares: the result record, the table and file writers, the optional
matplotlib, a small training loop and the data sets."""

import csv
import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

PLOT_HINT = ('matplotlib is not installed, so no figures were drawn; install it with '
             '`pip install "fusednn[plot]"` (from a checkout: `pip install ".[plot]"`)')


@dataclass
class DemoResult:
    """One demo's outcome: ``rows`` (dicts keyed by ``columns``) is the measured table, ``claim``
    the course's claim, ``measured`` what the numbers say, ``holds`` whether the claim's
    direction was seen (the ``check`` sentence says which comparison decided it), ``files`` what
    was written and ``notes`` anything the reader should know (e.g. figures not drawn)."""

    name: str
    title: str
    claim: str
    columns: list
    rows: list
    measured: str
    holds: bool
    check: str
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def column(self, name, **where):
        """The values of column ``name`` in the rows matching every ``key=value`` of ``where``."""
        return [r[name] for r in self.rows if all(r.get(k) == v for k, v in where.items())]

    def markdown_table(self):
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines)

    def markdown(self):
        """The table with the claim and what was measured, as written to ``NAME.md``."""
        verdict = "yes" if self.holds else "no"
        parts = [f"# {self.title}", "", f"**Claim (the course):** {self.claim}", "", self.markdown_table(), "",
                 f"**Measured:** {self.measured}", "", f"**Claim's direction seen:** {verdict} ({self.check})"]
        parts += [""] + [f"Note: {n}" for n in self.notes] if self.notes else []
        return "\n".join(parts) + "\n"

    def text(self):
        """What ``python -m fusednn demo NAME`` prints."""
        widths = [max(len(c), *(len(_fmt(r.get(c))) for r in self.rows)) if self.rows else len(c)
                  for c in self.columns]
        table = ["  ".join(c.rjust(w) for c, w in zip(self.columns, widths)),
                 "  ".join("-" * w for w in widths)]
        table += ["  ".join(_fmt(r.get(c)).rjust(w) for c, w in zip(self.columns, widths)) for r in self.rows]
        verdict = "yes" if self.holds else "NO"
        lines = [f"== {self.name}: {self.title}", f"Claim: {self.claim}", ""] + table + [
            "", f"Measured: {self.measured}", f"Claim's direction seen: {verdict} ({self.check})"]
        lines += [f"Note: {n}" for n in self.notes]
        if self.files:
            lines.append("Wrote: " + ", ".join(self.files))
        lines.append(f"({self.seconds:.1f} s)")
        return "\n".join(lines)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def matplotlib_figure():
    """The ``matplotlib.figure.Figure`` class, or None when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def finish(result, out_dir, figures, dpi, started):
    """Write ``NAME.csv``, ``NAME.md`` and the figures into ``out_dir`` (nothing when None) and
    fill in ``result.files``, ``notes`` and ``seconds``. ``figures`` is a list of
    ``(file name, figsize, draw)``: ``draw(fig)`` draws on a new Figure."""
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        Figure = matplotlib_figure() if figures else None
        if figures and Figure is None:
            result.notes.append(PLOT_HINT)
        for filename, figsize, draw in figures if Figure is not None else ():
            fig = Figure(figsize=figsize, layout="constrained")
            draw(fig)
            path = os.path.join(out_dir, filename)
            fig.savefig(path, dpi=dpi)
            result.files.append(path)
        csv_path = os.path.join(out_dir, f"{result.name}.csv")
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=result.columns, extrasaction="ignore")
            writer.writeheader()
            for row in result.rows:
                writer.writerow({c: _csv_value(row.get(c)) for c in result.columns})
        md_path = os.path.join(out_dir, f"{result.name}.md")
        result.files += [csv_path, md_path]
        with open(md_path, "w") as f:
            f.write(result.markdown())
    result.seconds = time.perf_counter() - started
    return result


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    return "" if v is None else v


# ---- training


def train(model, loss, optimizer, x, y, *, epochs, batch_size=None, seed=0, schedule=None, regularizer=None,
          transform=None):
    """Mini-batch training (the loop :func:`fusednn.train.fit` runs, without its per-epoch
    bookkeeping). ``y`` is an array or a tuple of arrays indexed like ``x`` (a loss's target
    pair); ``batch_size=None`` is full-batch gradient descent. ``schedule(step)`` sets every
    group's lr before each update; ``transform(xb, step)`` (augmentation) replaces each batch's
    inputs. Returns the per-epoch (sample-weighted) mean training loss, the loss the optimizer
    saw (with dropout active)."""
    n = len(x)
    batch_size = n if batch_size is None else batch_size
    tuple_target = isinstance(y, tuple)
    history, step = [], 0
    model.train()
    for epoch in range(1, epochs + 1):
        order = np.random.default_rng([seed, epoch]).permutation(n) if batch_size < n else None
        total = 0.0
        for start in range(0, n, batch_size):
            if order is None:
                xb, yb = x, y
            else:
                idx = order[start:start + batch_size]
                xb = x[idx]
                yb = tuple(t[idx] for t in y) if tuple_target else y[idx]
            if transform is not None:
                xb = transform(xb, step)
            if schedule is not None:
                for group in optimizer.param_groups:
                    group["lr"] = schedule(step)
            out = model.forward(xb, training=True)
            value, d_out = loss.value_and_grad(out, yb)
            model.backward(d_out)
            if regularizer is not None:
                regularizer.add_grad(model.params.data, model.params.grad)
            optimizer.step()
            step += 1
            total += float(value) * len(xb)
        history.append(total / n)
    model.eval()
    return history


def evaluate(model, loss, x, y):
    """(loss, accuracy or None) of the model in evaluation mode."""
    out = model.forward(x, training=False)
    acc = float(np.mean(np.argmax(out, axis=1) == y)) if np.asarray(y).dtype.kind in "iu" else None
    return float(loss(out, y)), acc


@functools.lru_cache(maxsize=None)
def _digits(seed):
    from fusednn import data
    xs = {s: data.digits(s, seed=seed) for s in ("train", "val", "test")}
    scaler = data.StandardScaler().fit(xs["train"][0])
    return {s: (scaler.transform(x).astype(np.float32), y) for s, (x, y) in xs.items()}


def digits(split, seed=0, n=None):
    """The digits split standardized with the training split's statistics (copies), the first
    ``n`` rows when given."""
    x, y = _digits(seed)[split]
    return (x[:n].copy(), y[:n].copy()) if n is not None else (x.copy(), y.copy())

