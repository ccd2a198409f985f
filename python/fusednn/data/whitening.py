"""Whitening and per-sample mean subtraction, in the scikit-learn style of the scalers
(:mod:`fusednn.data.preprocessing`): ``fit(x, y=None)``, ``transform``, ``inverse_transform``,
``fit_transform``, ``NotFittedError`` before ``fit``.

The covariance is accumulated in float64 over the centred data, with the n - 1 divisor of
``numpy.cov`` and of scikit-learn's PCA, and decomposed by LAPACK (``numpy.linalg.eigh``; with
CuPy input, ``cupy.linalg.eigh`` on the GPU). Eigenvalues below the rank tolerance
(``max(eigenvalue) * features * float64 epsilon``, as ``numpy.linalg.matrix_rank``) count as 0.
A direction of variance ``v`` is scaled by ``1 / sqrt(v + eps)``; with ``eps = 0`` a
zero-variance direction is set to 0 instead of dividing by 0 (and ``inverse_transform`` cannot
restore it). docs/data.md maps the course's formulas to these arguments.
"""

import numbers

import numpy as np

from fusednn._backend import array_module, is_array, to_host
from fusednn._checks import _show, at_least_zero
from fusednn.data.preprocessing import NotFittedError, _fit_input, _Scaler

__all__ = ["PCAWhitening", "ZCAWhitening", "PerSampleMeanSubtraction"]


def _device_matrix(x, fit):
    """A CuPy x checked as the NumPy path checks (float32/float64, 2-d, finite; rows to fit)."""
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-d array of shape (n, features), got shape {x.shape}")
    if fit and (x.shape[0] == 0 or x.shape[1] == 0):
        raise ValueError(f"x: expected at least one sample and one feature to fit, got shape {x.shape}")
    if not bool(array_module(x).isfinite(x).all()):
        raise ValueError(f"x: expected finite values{' to fit' if fit else ''}, got NaN or infinity")
    return x


def _is_device(x):
    return is_array(x) and not isinstance(x, np.ndarray)


def _check_eps(eps):
    return at_least_zero("eps", eps)


def _eigen(x):
    """(mean, eigenvalues descending, eigenvectors as rows) of x's covariance, float64 on the host."""
    xp = array_module(x)
    x64 = x.astype(xp.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    cov = centred.T @ centred / max(len(x64) - 1, 1)
    values, vectors = xp.linalg.eigh(cov)  # ascending, LAPACK syevd (cuSOLVER on the GPU)
    mean, values, vectors = to_host(mean), to_host(values), to_host(vectors)
    values, vectors = values[::-1].copy(), vectors[:, ::-1].T.copy()
    tol = max(values[0], 0.0) * len(values) * np.finfo(np.float64).eps
    values[values <= tol] = 0.0
    # A deterministic sign: each component's largest-magnitude entry is positive.
    signs = np.sign(vectors[np.arange(len(vectors)), np.abs(vectors).argmax(axis=1)])
    vectors *= np.where(signs == 0, 1.0, signs)[:, None]
    return mean, values, vectors


def _scales(values, eps):
    """1 / sqrt(v + eps) per direction; 0 where v + eps is 0."""
    total = values + eps
    return np.where(total > 0, 1.0 / np.sqrt(np.where(total > 0, total, 1.0)), 0.0)


class _Whitening(_Scaler):
    def _input(self, x, inverse=False):
        """x checked for transform (or inverse_transform), and its array module."""
        if _is_device(x):
            if not hasattr(self, "n_features_in_"):
                raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x) first")
            x = _device_matrix(x, fit=False) if not inverse else x
            features = self._n_features_out() if inverse else self.n_features_in_
            if x.ndim != 2 or x.shape[1] != features:
                raise ValueError(f"x: expected {features} features (columns), got shape {x.shape}")
            return x, array_module(x)
        return self._check(x, inverse=inverse), np

    def _fit_data(self, x):
        if _is_device(x):
            return _device_matrix(x, fit=True)
        return _fit_input(x)

    def _apply(self, x, matrix, offset_before=None, offset_after=None):
        """(x - offset_before) @ matrix + offset_after in x's dtype on x's device."""
        xp = array_module(x)
        dt = x.dtype
        if offset_before is not None:
            x = x - xp.asarray(offset_before.astype(dt))
        y = x @ xp.asarray(matrix.astype(dt))
        if offset_after is not None:
            y = y + xp.asarray(offset_after.astype(dt))
        return y


class PCAWhitening(_Whitening):
    """PCA whitening: ``(x - mean_) @ components_.T / sqrt(explained_variance_ + eps)``.

    ``components_`` (k, features) are the covariance's eigenvectors by decreasing eigenvalue
    (``explained_variance_``), k = ``n_components`` (None: all features). With ``eps = 0`` this is
    scikit-learn's ``PCA(n_components, whiten=True).transform`` up to the sign of each component
    (here each component's largest-magnitude entry is positive). ``n_components`` may exceed
    the data's rank: the extra components have variance 0. Fitted attributes (float64):
    ``mean_``, ``components_``, ``explained_variance_``, ``scale_`` (the factors
    ``1 / sqrt(explained_variance_ + eps)``, 0 where that divides by 0); ``n_components_``,
    ``n_features_in_``.
    """

    def __init__(self, n_components=None, eps=1e-5):
        _check_n_components(n_components)
        _check_eps(eps)
        self.n_components = n_components
        self.eps = eps

    def fit(self, x, y=None):
        """Compute the mean and the covariance's eigendecomposition of ``x`` (``y`` is ignored);
        returns self."""
        k, eps = _check_n_components(self.n_components), _check_eps(self.eps)
        x = self._fit_data(x)
        features = x.shape[1]
        if k is not None and k > features:
            raise ValueError(f"n_components: expected at most {features} (the number of features), got {k}")
        mean, values, vectors = _eigen(x)
        k = features if k is None else k
        self.mean_ = mean
        self.components_ = vectors[:k]
        self.explained_variance_ = values[:k]
        self.scale_ = _scales(self.explained_variance_, eps)
        self.n_components_ = k
        self.n_features_in_ = features
        return self

    def _n_features_out(self):
        return self.n_components_

    def transform(self, x):
        """The whitened components of ``x``: shape (n, n_components_), x's dtype."""
        x, _ = self._input(x)
        return self._apply(x, (self.components_.T * self.scale_), offset_before=self.mean_)

    def inverse_transform(self, x):
        """``x * sqrt(explained_variance_ + eps) @ components_ + mean_`` (exact when all
        components are kept and none was set to 0)."""
        x, _ = self._input(x, inverse=True)
        back = np.where(self.scale_ > 0, 1.0 / np.where(self.scale_ > 0, self.scale_, 1.0), 0.0)
        return self._apply(x, back[:, None] * self.components_, offset_after=self.mean_)


class ZCAWhitening(_Whitening):
    """ZCA whitening: ``(x - mean_) @ whitening_`` with the symmetric
    ``whitening_ = components_.T @ diag(1 / sqrt(explained_variance_ + eps)) @ components_``,
    the whitening closest to the data (images stay images). Fitted attributes (float64):
    ``mean_``, ``components_``, ``explained_variance_``, ``whitening_``, ``unwhitening_`` (its
    inverse, used by ``inverse_transform``), ``n_features_in_``.
    """

    def __init__(self, eps=1e-5):
        _check_eps(eps)
        self.eps = eps

    def fit(self, x, y=None):
        """Compute the mean and the ZCA matrix of ``x`` (``y`` is ignored); returns self."""
        eps = _check_eps(self.eps)
        x = self._fit_data(x)
        mean, values, vectors = _eigen(x)
        scale = _scales(values, eps)
        self.mean_ = mean
        self.components_ = vectors
        self.explained_variance_ = values
        w = vectors.T @ (scale[:, None] * vectors)
        self.whitening_ = (w + w.T) / 2  # symmetric to the last bit
        inverse = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
        u = vectors.T @ (inverse[:, None] * vectors)
        self.unwhitening_ = (u + u.T) / 2
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        """``(x - mean_) @ whitening_`` in x's dtype."""
        x, _ = self._input(x)
        return self._apply(x, self.whitening_, offset_before=self.mean_)

    def inverse_transform(self, x):
        """``x @ whitening_^-1 + mean_`` (exact unless eps = 0 set a direction to 0)."""
        x, _ = self._input(x, inverse=True)
        return self._apply(x, self.unwhitening_, offset_after=self.mean_)


class PerSampleMeanSubtraction(_Scaler):
    """Subtract from each sample (row) its own mean over its features: ``x - x.mean(axis=1)``,
    the course's per-example mean subtraction for images (each image's brightness removed). It
    learns nothing: ``fit`` only records ``n_features_in_``. There is no ``inverse_transform``
    (the means are not kept)."""

    def __init__(self):
        pass

    def fit(self, x, y=None):
        """Record the number of features (``y`` is ignored); returns self."""
        x = _fit_input(x) if not _is_device(x) else _device_matrix(x, fit=True)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        """Each row minus its mean (accumulated in float64), in x's dtype."""
        if _is_device(x):
            if not hasattr(self, "n_features_in_"):
                raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x) first")
            x = _device_matrix(x, fit=False)
            if x.shape[1] != self.n_features_in_:
                raise ValueError(f"x: expected {self.n_features_in_} features (columns), got {x.shape[1]}")
        else:
            x = self._check(x)
        xp = array_module(x)
        return x - x.mean(axis=1, dtype=xp.float64, keepdims=True).astype(x.dtype)


def _check_n_components(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"n_components: expected None or an integer >= 1, got {_show(value)}")
    if value < 1:
        raise ValueError(f"n_components: expected None or an integer >= 1, got {_show(value)}")
    return int(value)
