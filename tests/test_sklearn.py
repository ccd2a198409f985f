"""fusednn's transformers under scikit-learn: its estimator checks, clone, Pipeline.

The transformers implement scikit-learn's protocol without importing scikit-learn (see
fusednn.data.preprocessing); these tests need scikit-learn (the `test` extra has it).
"""

import importlib.util
import sys
import warnings

import numpy as np
import pytest

from fusednn import data

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# The transformers of fusednn.data; the whitening ones join once their module exists.
ESTIMATORS = [data.StandardScaler(), data.StandardScaler(drop_zero_variance=True), data.MinMaxScaler()]
if importlib.util.find_spec("fusednn.data.whitening") is not None:
    from fusednn.data import whitening
    ESTIMATORS += [getattr(whitening, name)() for name in ("PCAWhitening", "ZCAWhitening", "PerSampleMeanSubtraction")
                   if hasattr(whitening, name)]

# Every check that a fusednn transformer fails, with the reason; xfail_strict makes a check
# that starts passing fail here, so the table cannot go stale.
_STRICT_INPUT = ("fusednn refuses integer and object arrays with a TypeError instead of casting them to float64 "
                 "(tests/test_data.py pins this); the check fits int32/int64 (or object) data")
EXPECTED_FAILURES = {
    "check_do_not_raise_errors_in_init_or_set_params": (
        "fusednn checks constructor arguments when they are given (StandardScaler(eps=-1) is a ValueError at once, "
        "pinned by tests/test_data.py); scikit-learn defers the checks to fit, and this check passes -1 or "
        "'helloworld' to every constructor argument"),
    "check_estimators_dtypes": _STRICT_INPUT,
    "check_dtype_object": _STRICT_INPUT,
}
# scikit-learn's sparse checks call set_params(with_mean=False) on any estimator named
# StandardScaler (a parameter of scikit-learn's StandardScaler that fusednn's does not have).
_STANDARD_SCALER_ONLY = {
    "check_estimator_sparse_array": "scikit-learn special-cases the name StandardScaler: set_params(with_mean=False)",
    "check_estimator_sparse_matrix": "scikit-learn special-cases the name StandardScaler: set_params(with_mean=False)",
}


def expected_failures(estimator):
    table = dict(EXPECTED_FAILURES)
    if not estimator.get_params():  # no constructor arguments to refuse
        del table["check_do_not_raise_errors_in_init_or_set_params"]
    if type(estimator).__name__ == "StandardScaler":
        table.update(_STANDARD_SCALER_ONLY)
    return table


with warnings.catch_warnings():  # collecting the checks warns "does not inherit from BaseEstimator" (see below)
    warnings.filterwarnings("ignore", message=".*does not inherit from", category=UserWarning)
    _parametrize_checks = parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures,
                                                  xfail_strict=True)


@_parametrize_checks
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # "does not inherit from sklearn.base.BaseEstimator": deliberate (no scikit-learn import).
        warnings.filterwarnings("ignore", message=".*does not inherit from", category=UserWarning)
        # check_set_params: "It is recommended to delay parameter validation until fit" (see above).
        warnings.filterwarnings("ignore", message=".*occurred during set_params", category=UserWarning)
        check(estimator)


def _sample(n=60, features=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)) * [1.0, 10.0, 0.1, 3.0][:features] + 2.0
    y = (x[:, 0] + x[:, 1] / 10 > 4.0).astype(np.int64)
    return x, y


def test_pipeline_with_logistic_regression():
    """The issue's example: make_pipeline(data.StandardScaler(), LogisticRegression()).fit(x, y)
    (fit_transform(x, y) failed with a TypeError); the same predictions as standardizing by hand."""
    x, y = _sample()
    pipe = make_pipeline(data.StandardScaler(), LogisticRegression()).fit(x, y)
    z = (x - x.mean(0)) / x.std(0)
    by_hand = LogisticRegression().fit(z, y)
    np.testing.assert_array_equal(pipe.predict(x), by_hand.predict(z))
    assert pipe.score(x, y) > 0.9
    scaler = pipe.named_steps["standardscaler"]
    assert scaler.n_features_in_ == 4 and scaler.mean_.shape == (4,)


def test_pipeline_set_params_and_clone():
    x, y = _sample()
    pipe = Pipeline([("scale", data.MinMaxScaler()), ("clf", LogisticRegression())])
    pipe.set_params(scale__feature_range=(-1, 1))
    assert pipe.get_params()["scale__feature_range"] == (-1, 1)
    fitted = pipe.fit(x, y)
    assert fitted.named_steps["scale"].transform(x).min() == -1.0
    fresh = clone(pipe)
    assert not hasattr(fresh.named_steps["scale"], "n_features_in_")
    assert fresh.named_steps["scale"].feature_range == (-1, 1)


def test_grid_search_over_a_scaler_parameter():
    from sklearn.model_selection import GridSearchCV
    x, y = _sample()
    search = GridSearchCV(make_pipeline(data.StandardScaler(), LogisticRegression()),
                          {"standardscaler__eps": [0.0, 0.5]}, cv=2).fit(x, y)
    best = search.best_estimator_.named_steps["standardscaler"]
    assert best.eps == search.best_params_["standardscaler__eps"] and best.n_features_in_ == 4
    # each candidate's score is that of the pipeline fitted by hand with its eps
    from sklearn.model_selection import cross_val_score
    for eps, score in zip(search.cv_results_["param_standardscaler__eps"], search.cv_results_["mean_test_score"]):
        by_hand = cross_val_score(make_pipeline(data.StandardScaler(eps=eps), LogisticRegression()), x, y, cv=2)
        assert score == by_hand.mean(), eps


def test_params_are_stored_as_given_and_set_params_is_checked():
    rng_arg = [0, 2]
    scaler = data.MinMaxScaler(rng_arg)
    assert scaler.feature_range is rng_arg and scaler.get_params() == {"feature_range": [0, 2]}
    assert clone(scaler).feature_range == [0, 2]  # clone's check that the constructor keeps its arguments passes
    s = data.StandardScaler()
    assert s.get_params() == {"drop_zero_variance": False, "eps": 0.0}
    assert s.set_params(eps=0.5) is s and s.eps == 0.5
    with pytest.raises(ValueError, match="eps: expected a value >= 0"):
        s.set_params(drop_zero_variance=True, eps=-1.0)
    assert s.get_params() == {"drop_zero_variance": False, "eps": 0.5}  # unchanged: checked before set
    with pytest.raises(ValueError, match="set_params: StandardScaler has no parameter 'with_mean'"):
        s.set_params(with_mean=False)
    assert repr(s) == "StandardScaler(eps=0.5)" and repr(data.MinMaxScaler()) == "MinMaxScaler()"


def test_set_params_after_fit_takes_effect_at_the_next_fit():
    x, _ = _sample()
    s = data.MinMaxScaler().fit(x)
    s.set_params(feature_range=(2, 3))
    assert s.transform(x).min() == 0.0  # the fitted range until the next fit
    assert s.fit(x).transform(x).min() == 2.0


def test_no_sklearn_import():
    """numpy stays the only heavy dependency: using the scalers imports no scikit-learn."""
    import subprocess
    code = ("import sys; from fusednn import data; x = __import__('numpy').ones((3, 2)); "
            "s = data.StandardScaler(); s.fit_transform(x); s.set_params(eps=0.1); repr(s); "
            "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


class Frame:
    """A stand-in for a pandas DataFrame (pandas is not a test dependency): named columns and
    __array__."""

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


@pytest.mark.parametrize("make", [data.StandardScaler, data.MinMaxScaler])
def test_feature_names_as_scikit_learn(make):
    x, _ = _sample()
    names = ["a", "b", "c", "d"]
    s = make().fit(Frame(x, names))
    assert s.feature_names_in_.dtype == object and list(s.feature_names_in_) == names
    np.testing.assert_array_equal(s.transform(Frame(x, names)), make().fit(x).transform(x))
    with pytest.raises(ValueError, match="x: The feature names should match those that were passed during fit.\n"
                                         "Feature names must be in the same order as they were in fit."):
        s.transform(Frame(x, names[::-1]))
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- e\nFeature names seen at fit time, "
                                         "yet now missing:\n- d\n"):
        s.transform(Frame(x, ["a", "b", "c", "e"]))
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing:\n- c\n- d\n$"):
        s.transform(Frame(x[:, :2], ["a", "b"]))  # the names first, as scikit-learn
    with pytest.warns(UserWarning, match=f"X does not have valid feature names, but {make.__name__} was fitted with "
                                         "feature names"):
        s.transform(x)
    s.fit(x)  # a refit on an array forgets the names
    assert not hasattr(s, "feature_names_in_")
    with pytest.warns(UserWarning, match=f"X has feature names, but {make.__name__} was fitted without"):
        s.transform(Frame(x, names))
    with pytest.raises(TypeError, match="feature names are only supported when all columns are named by strings, "
                                        "got column names of the types \\['int', 'str'\\]"):
        make().fit(Frame(x, ["a", 1, "c", "d"]))
    s.fit(Frame(x, [0, 1, 2, 3]))  # no string names: none recorded, as scikit-learn
    assert not hasattr(s, "feature_names_in_")
