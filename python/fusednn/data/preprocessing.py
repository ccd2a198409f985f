"""Feature scalers in the scikit-learn style: ``fit``, ``transform``, ``inverse_transform``,
``fit_transform``; ``NotFittedError`` before ``fit``.

The scalers follow scikit-learn's estimator protocol without importing scikit-learn (numpy
stays the only dependency): ``fit(X, y=None)`` (``y`` is ignored), ``fit_transform(X, y=None,
**fit_params)``, ``get_params``/``set_params`` (the constructor arguments, stored as given),
fitted attributes ending in ``_`` (``feature_names_in_`` for a data frame with string column
names, checked by transform as scikit-learn does) and ``__sklearn_tags__`` (which imports
scikit-learn, as only scikit-learn calls it). So ``sklearn.base.clone``, ``sklearn.pipeline.Pipeline`` and
``make_pipeline(data.StandardScaler(), LogisticRegression())`` take them, and they pass
``sklearn.utils.estimator_checks.check_estimator`` but for the checks that tests/test_sklearn.py
lists with their reasons (fusednn refuses integer and object arrays instead of casting them,
and checks constructor arguments at once). Every transformer derived from :class:`_Scaler`
gets the protocol.
"""

import functools
import inspect
import numbers
import warnings

import numpy as np

from fusednn._checks import _show, at_least_zero
from fusednn.data._args import _flag

__all__ = ["NotFittedError", "MinMaxScaler", "StandardScaler"]

# ---------------------------------------------------------------------------------------------
# Scalers


class NotFittedError(ValueError, AttributeError):
    """A scaler was used before ``fit`` (a ValueError and an AttributeError, as in scikit-learn)."""


def _as_matrix(x):
    """x as a 2-d float32 or float64 array (array-likes such as lists are converted; integer,
    object and complex data are refused, not cast; so are sparse matrices)."""
    if type(x).__module__.startswith("scipy.sparse"):
        raise TypeError(f"x: sparse input ({type(x).__qualname__}) is not supported: pass a dense array "
                        "(x.toarray())")
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise ValueError(f"x: expected a float32 or float64 array, got dtype {x.dtype} (Complex data not supported)")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim != 2:
        hint = " (Reshape your data: x.reshape(-1, 1) for one feature, x.reshape(1, -1) for one sample)" \
            if x.ndim == 1 else ""
        raise ValueError(f"x: expected a 2-d array of shape (n, features), got shape {x.shape}{hint}")
    return x


def _finite(x, what):
    if not np.isfinite(x).all():
        raise ValueError(f"x: expected finite values{what}, got NaN or infinity")
    return x


def _feature_names(x):
    """The column names of a data frame ``x`` (an object with ``columns``, as pandas') as an
    object array when they are all strings; None for arrays and unnamed (non-string) columns."""
    columns = getattr(x, "columns", None)
    if columns is None or isinstance(x, np.ndarray):
        return None
    names = np.asarray(list(columns), dtype=object)
    strings = [isinstance(n, str) for n in names]
    if names.ndim != 1 or not any(strings):
        return None
    if not all(strings):
        kinds = sorted({type(n).__name__ for n in names})
        raise TypeError(f"x: feature names are only supported when all columns are named by strings, got column "
                        f"names of the types {kinds}; convert them with x.columns = x.columns.astype(str)")
    return names


def _names_list(names):
    shown = "".join(f"- {n}\n" for n in names[:5])
    return shown + ("- ...\n" if len(names) > 5 else "")


def _fit_input(x):
    """x as a 2-d float array with at least one row and one column and only finite values."""
    x = _as_matrix(x)
    if x.shape[0] == 0:
        raise ValueError(f"x: expected at least one sample (row) to fit, got shape {x.shape}")
    if x.shape[1] == 0:
        raise ValueError(f"x: expected at least one feature (column) to fit, got 0 feature(s) (shape={x.shape}) "
                         "while a minimum of 1 is required.")
    return _finite(x, " to fit")


class _Scaler:
    """The scikit-learn style API shared by the scalers (and the other transformers of
    :mod:`fusednn.data` that derive from it); ``fit`` sets ``n_features_in_``.

    A subclass defines ``__init__`` (explicit keyword parameters, each stored unchanged under
    its own name after checking it), ``fit(x, y=None)`` returning self, ``transform`` and
    ``inverse_transform``; it gets ``fit_transform``, ``get_params``, ``set_params``, a
    scikit-learn style ``repr``, ``__sklearn_tags__``, the fitted-state export that
    ``fusednn.serialize`` saves, and :meth:`_check` for the inputs of transform and
    inverse_transform. Its ``fit`` is wrapped to record ``feature_names_in_`` when ``x`` is a
    data frame with string column names (pandas'), which ``_check`` then compares as
    scikit-learn does."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__:
            cls.fit = _recording_feature_names(cls.__dict__["fit"])

    # ---- the scikit-learn estimator protocol

    @classmethod
    def _get_param_names(cls):
        """The constructor's parameter names, sorted (as scikit-learn's BaseEstimator)."""
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__: scikit-learn estimators take no *args or **kwargs")
        return sorted(p.name for p in params)

    def get_params(self, deep=True):
        """The constructor arguments, by name, as given (``deep`` is accepted for scikit-learn:
        these transformers hold no nested estimators)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments; returns self. The new set of arguments is checked by the
        constructor first, so an unknown name or a bad value raises and changes nothing."""
        valid = self._get_param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"set_params: {type(self).__name__} has no parameter {unknown[0]!r} (its parameters: "
                             f"{', '.join(valid)})")
        type(self)(**{**self.get_params(), **params})  # raises for a bad value
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = (default is not inspect.Parameter.empty and type(value) is type(default)
                        and bool(value == default))
            except (TypeError, ValueError):  # e.g. an array compared elementwise
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self):
        """scikit-learn's tags: an unsupervised transformer of dense 2-d float arrays that keeps
        float32 and float64 (only scikit-learn calls this, so scikit-learn is imported here)."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
                    input_tags=InputTags(two_d_array=True, allow_nan=False))

    def fit_transform(self, x, y=None, **fit_params):
        """``fit(x, y, **fit_params)`` then ``transform(x)`` (``y`` is ignored by the fit of
        every fusednn transformer; it is taken for scikit-learn's Pipeline)."""
        return self.fit(x, y, **fit_params).transform(x)

    # ---- fitted state (what fusednn.serialize saves with a model)

    def _fitted_state(self):
        """The fitted attributes (public names ending in ``_``), by name."""
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x) first")
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    # ---- input checks

    def _n_features_out(self):
        """How many features ``transform`` returns (and ``inverse_transform`` takes)."""
        return self.n_features_in_

    def _check(self, x, inverse=False):
        """x as a 2-d float array with as many columns as ``transform`` (or, with ``inverse``,
        ``inverse_transform``) takes, and (for ``transform``) only finite values and the column
        names seen by ``fit``; NotFittedError before ``fit``."""
        if not hasattr(self, "n_features_in_"):
            _as_matrix(x)
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x) first")
        if not inverse:
            self._check_feature_names(x)
        x = _as_matrix(x)
        features = self._n_features_out() if inverse else self.n_features_in_
        if x.shape[1] != features:
            # The part in parentheses is scikit-learn's wording, which its estimator checks look for.
            sklearn_words = "" if inverse else (f" (X has {x.shape[1]} features, but {type(self).__name__} is "
                                                f"expecting {features} features as input)")
            raise ValueError(f"x: expected {features} features (columns), got {x.shape[1]}{sklearn_words}")
        return x if inverse else _finite(x, "")

    def _check_feature_names(self, x):
        """scikit-learn's rule (and wording): data frame columns must be those ``fit`` saw, in
        that order; a warning when only one of ``fit`` and this call had names."""
        fitted, names, who = getattr(self, "feature_names_in_", None), _feature_names(x), type(self).__name__
        if fitted is None and names is None:
            return
        if fitted is None or names is None:
            warnings.warn(f"X has feature names, but {who} was fitted without feature names" if fitted is None else
                          f"X does not have valid feature names, but {who} was fitted with feature names",
                          UserWarning, stacklevel=4)
            return
        if len(names) == len(fitted) and (names == fitted).all():
            return
        unseen, missing = sorted(set(names) - set(fitted)), sorted(set(fitted) - set(names))
        message = "The feature names should match those that were passed during fit.\n"
        if unseen:
            message += "Feature names unseen at fit time:\n" + _names_list(unseen)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + _names_list(missing)
        if not unseen and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(f"x: {message}")


def _recording_feature_names(fit):
    """``fit`` that also sets ``feature_names_in_`` (data frame input with string column names)
    or removes an earlier fit's (any other input)."""
    @functools.wraps(fit)
    def fit_recording_feature_names(self, x, *args, **kwargs):
        names = _feature_names(x)
        result = fit(self, x, *args, **kwargs)
        if names is not None:
            self.feature_names_in_ = names
        elif "feature_names_in_" in vars(self):
            del self.feature_names_in_
        return result
    return fit_recording_feature_names


class MinMaxScaler(_Scaler):
    """Scale each feature linearly so that its minimum and maximum over the data given to
    ``fit`` map to ``feature_range[0]`` and ``feature_range[1]``.

    ``transform(x) = (x - data_min_) * scale_ + feature_range[0]`` with
    ``scale_ = (feature_range[1] - feature_range[0]) / data_range_``; a constant feature
    (``data_range_ == 0``) gets ``scale_ = feature_range[1] - feature_range[0]``, so its fitted
    value maps to ``feature_range[0]``. Takes float32 or float64 arrays of shape
    (n, features) and returns arrays of the same dtype. Fitted attributes (float64):
    ``data_min_``, ``data_max_``, ``data_range_``, ``scale_``; ``feature_range_`` (the pair
    ``fit`` used, as floats) and ``n_features_in_``.
    """

    def __init__(self, feature_range=(0, 1)):
        _feature_range(feature_range)
        self.feature_range = feature_range

    def fit(self, x, y=None):
        """Record each feature's minimum and maximum over the rows of ``x`` (``y`` is ignored);
        returns self."""
        low, high = _feature_range(self.feature_range)
        x = _fit_input(x).astype(np.float64)
        self.data_min_, self.data_max_ = x.min(axis=0), x.max(axis=0)
        self.data_range_ = self.data_max_ - self.data_min_
        self.scale_ = (high - low) / np.where(self.data_range_ == 0, 1.0, self.data_range_)
        self.feature_range_ = (low, high)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        """``x`` scaled to ``feature_range`` (values outside the fitted range go outside it)."""
        x = self._check(x)
        dt = x.dtype
        return (x - self.data_min_.astype(dt)) * self.scale_.astype(dt) + dt.type(self.feature_range_[0])

    def inverse_transform(self, x):
        """Undo ``transform``: ``(x - feature_range[0]) / scale_ + data_min_``."""
        x = self._check(x, inverse=True)
        dt = x.dtype
        return (x - dt.type(self.feature_range_[0])) / self.scale_.astype(dt) + self.data_min_.astype(dt)


def _feature_range(feature_range):
    """feature_range as a pair of floats (low, high) with low < high."""
    pair = tuple(feature_range) if isinstance(feature_range, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, (numbers.Real, np.floating, np.integer))
                                 and not isinstance(v, (bool, np.bool_)) for v in pair):
        raise TypeError(f"feature_range: expected a pair (low, high) of real numbers, got {_show(feature_range)}")
    if not float(pair[0]) < float(pair[1]):
        raise ValueError(f"feature_range: expected low < high, got {_show(feature_range)}")
    return float(pair[0]), float(pair[1])


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
        _flag("drop_zero_variance", drop_zero_variance)
        at_least_zero("eps", eps)
        self.drop_zero_variance = drop_zero_variance
        self.eps = eps

    def fit(self, x, y=None):
        """Record each feature's mean and standard deviation over the rows of ``x`` (``y`` is
        ignored); returns self."""
        drop, eps = _flag("drop_zero_variance", self.drop_zero_variance), at_least_zero("eps", self.eps)
        x = _fit_input(x)
        constant = (x == x[0]).all(axis=0)  # exact, where a computed variance may be a rounding error
        x = x.astype(np.float64)
        self.mean_ = np.where(constant, x[0], x.mean(axis=0))
        self.var_ = np.where(constant, 0.0, x.var(axis=0))
        zero = np.sqrt(self.var_) <= eps
        self.scale_ = np.where(zero, 1.0, np.sqrt(self.var_))
        self.kept_features_ = ~zero if drop else np.ones(x.shape[1], dtype=bool)
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
