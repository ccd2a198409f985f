"""Feature scalers in the scikit-learn style: ``fit``, ``transform``, ``inverse_transform``,
``fit_transform``; ``NotFittedError`` before ``fit``."""

import numbers

import numpy as np

from fusednn._checks import _show, at_least_zero
from fusednn.data._args import _flag

__all__ = ["NotFittedError", "MinMaxScaler", "StandardScaler"]

# ---------------------------------------------------------------------------------------------
# Scalers


class NotFittedError(ValueError, AttributeError):
    """A scaler was used before ``fit`` (a ValueError and an AttributeError, as in scikit-learn)."""


def _as_matrix(x):
    """x as a 2-d float32 or float64 array."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-d array of shape (n, features), got shape {x.shape}")
    return x


def _fit_input(x):
    """x as a 2-d float array with at least one row and only finite values."""
    x = _as_matrix(x)
    if len(x) == 0:
        raise ValueError(f"x: expected at least one sample (row) to fit, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x: expected finite values to fit, got NaN or infinity")
    return x


class _Scaler:
    """The scikit-learn style API shared by the scalers; ``fit`` sets ``n_features_in_``."""

    def fit_transform(self, x):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def _n_features_out(self):
        """How many features ``transform`` returns (and ``inverse_transform`` takes)."""
        return self.n_features_in_

    def _check(self, x, inverse=False):
        """x as a 2-d float array with as many columns as ``transform`` (or, with ``inverse``,
        ``inverse_transform``) takes; NotFittedError before ``fit``."""
        x = _as_matrix(x)
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x) first")
        features = self._n_features_out() if inverse else self.n_features_in_
        if x.shape[1] != features:
            raise ValueError(f"x: expected {features} features (columns), got {x.shape[1]}")
        return x


class MinMaxScaler(_Scaler):
    """Scale each feature linearly so that its minimum and maximum over the data given to
    ``fit`` map to ``feature_range[0]`` and ``feature_range[1]``.

    ``transform(x) = (x - data_min_) * scale_ + feature_range[0]`` with
    ``scale_ = (feature_range[1] - feature_range[0]) / data_range_``; a constant feature
    (``data_range_ == 0``) gets ``scale_ = feature_range[1] - feature_range[0]``, so its fitted
    value maps to ``feature_range[0]``. Takes float32 or float64 arrays of shape
    (n, features) and returns arrays of the same dtype. Fitted attributes (float64):
    ``data_min_``, ``data_max_``, ``data_range_``, ``scale_``; and ``n_features_in_``.
    """

    def __init__(self, feature_range=(0, 1)):
        pair = tuple(feature_range) if isinstance(feature_range, (tuple, list)) else ()
        if len(pair) != 2 or not all(isinstance(v, (numbers.Real, np.floating, np.integer))
                                     and not isinstance(v, (bool, np.bool_)) for v in pair):
            raise TypeError(f"feature_range: expected a pair (low, high) of real numbers, got {_show(feature_range)}")
        if not float(pair[0]) < float(pair[1]):
            raise ValueError(f"feature_range: expected low < high, got {_show(feature_range)}")
        self.feature_range = (float(pair[0]), float(pair[1]))

    def fit(self, x):
        """Record each feature's minimum and maximum over the rows of ``x``; returns self."""
        x = _fit_input(x).astype(np.float64)
        low, high = self.feature_range
        self.data_min_, self.data_max_ = x.min(axis=0), x.max(axis=0)
        self.data_range_ = self.data_max_ - self.data_min_
        self.scale_ = (high - low) / np.where(self.data_range_ == 0, 1.0, self.data_range_)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        """``x`` scaled to ``feature_range`` (values outside the fitted range go outside it)."""
        x = self._check(x)
        dt = x.dtype
        return (x - self.data_min_.astype(dt)) * self.scale_.astype(dt) + dt.type(self.feature_range[0])

    def inverse_transform(self, x):
        """Undo ``transform``: ``(x - feature_range[0]) / scale_ + data_min_``."""
        x = self._check(x, inverse=True)
        dt = x.dtype
        return (x - dt.type(self.feature_range[0])) / self.scale_.astype(dt) + self.data_min_.astype(dt)


class StandardScaler(_Scaler):
    """Standardize each feature: ``(x - mean_) / scale_``, ``scale_`` being the population
    standard deviation (ddof=0, as in scikit-learn) over the data given to ``fit``.

    A feature is *zero-variance* when all its fitted values are equal or its standard deviation
    is at most ``eps`` (default 0: only exact constants). Such a feature is centred but not
    scaled (``scale_`` is 1), unless ``drop_zero_variance=True``: then ``transform`` leaves it
    out and ``inverse_transform`` restores it at its mean. ``kept_features_`` is the boolean
    mask of the features ``transform`` returns (all True without ``drop_zero_variance``).
    Takes float32 or float64 arrays of shape (n, features) and returns arrays of the same
    dtype. Other fitted attributes (float64): ``mean_``, ``var_``, ``scale_``; and
    ``n_features_in_``.
    """

    def __init__(self, drop_zero_variance=False, eps=0.0):
        self.drop_zero_variance = _flag("drop_zero_variance", drop_zero_variance)
        self.eps = at_least_zero("eps", eps)

    def fit(self, x):
        """Record each feature's mean and standard deviation over the rows of ``x``; returns self."""
        x = _fit_input(x)
        constant = (x == x[0]).all(axis=0)  # exact, where a computed variance may be a rounding error
        x = x.astype(np.float64)
        self.mean_ = np.where(constant, x[0], x.mean(axis=0))
        self.var_ = np.where(constant, 0.0, x.var(axis=0))
        zero = np.sqrt(self.var_) <= self.eps
        self.scale_ = np.where(zero, 1.0, np.sqrt(self.var_))
        self.kept_features_ = ~zero if self.drop_zero_variance else np.ones(x.shape[1], dtype=bool)
        self.n_features_in_ = x.shape[1]
        return self

    def _n_features_out(self):
        """How many features ``transform`` returns: those in ``kept_features_``."""
        return int(self.kept_features_.sum())

    def transform(self, x):
        """``(x - mean_) / scale_`` for the features in ``kept_features_``."""
        x = self._check(x)
        dt, kept = x.dtype, self.kept_features_
        return (x[:, kept] - self.mean_[kept].astype(dt)) / self.scale_[kept].astype(dt)

    def inverse_transform(self, x):
        """Undo ``transform``: ``x * scale_ + mean_``, with dropped features set to their mean."""
        x = self._check(x, inverse=True)
        dt, kept = x.dtype, self.kept_features_
        out = np.tile(self.mean_.astype(dt), (len(x), 1))
        out[:, kept] = x * self.scale_[kept].astype(dt) + self.mean_[kept].astype(dt)
        return out
