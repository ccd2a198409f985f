"""Small data sets, IDX (MNIST) files, feature scalers and minibatch iteration.

Every data set is returned as ``(x, y)``: ``x`` float32 of shape ``(n, features)`` and ``y``
int64 class labels of shape ``(n,)``. Random data sets are reproducible: the same arguments
(``seed`` included) give the same arrays.

The modules: :mod:`fusednn.data.datasets` (data sets and IDX files),
:mod:`fusednn.data.preprocessing` (scalers), :mod:`fusednn.data.batching` (minibatches),
:mod:`fusednn.data.whitening` (PCA/ZCA whitening, per-sample mean subtraction),
:mod:`fusednn.data.transforms` (seeded batched augmentation, docs/data.md),
:mod:`fusednn.data.sequences` (sequence tasks for the recurrent layers).
"""

from fusednn.data.batching import batches, num_batches
from fusednn.data.datasets import digits, mnist, moons, read_idx, spirals, xor
from fusednn.data.preprocessing import MinMaxScaler, NotFittedError, StandardScaler
from fusednn.data.whitening import PCAWhitening, PerSampleMeanSubtraction, ZCAWhitening
from fusednn.data import transforms
from fusednn.data.sequences import adding_problem, sequential_digits

__all__ = ["xor", "spirals", "moons", "digits", "read_idx", "mnist", "NotFittedError", "MinMaxScaler",
           "StandardScaler", "batches", "num_batches", "sequential_digits", "adding_problem",
           "PCAWhitening", "ZCAWhitening", "PerSampleMeanSubtraction", "transforms"]
