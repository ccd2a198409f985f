"""fusednn.data whitening: identity covariance of the whitened training data, a symmetric ZCA
matrix, PCA equal to scikit-learn's PCA(whiten=True) up to the sign of each component,
zero-variance directions and n_components > rank without NaN, round trips, and bad input."""

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy

from fusednn import data


def correlated(n=400, d=6, seed=("whitening",), dtype=np.float64):
    rng = np.random.default_rng(seed_of(*seed))
    mixing = rng.standard_normal((d, d)) * np.linspace(0.2, 3.0, d)
    return (rng.standard_normal((n, d)) @ mixing + 5.0).astype(dtype)


def covariance(z):
    return np.cov(to_numpy(z).astype(np.float64), rowvar=False)


@pytest.mark.parametrize("cls", [data.PCAWhitening, data.ZCAWhitening])
def test_whitened_training_data_has_identity_covariance(device, cls):
    x = to_device(device, correlated())
    exact = cls(eps=0.0).fit_transform(x)
    np.testing.assert_allclose(covariance(exact), np.eye(6), atol=1e-10)
    np.testing.assert_allclose(to_numpy(exact).mean(axis=0), 0, atol=1e-12)
    # eps shrinks the variance of each direction to v / (v + eps).
    t = cls(eps=0.01).fit(x)
    shrink = t.explained_variance_ / (t.explained_variance_ + 0.01)
    expected = np.diag(shrink) if cls is data.PCAWhitening else t.components_.T @ np.diag(shrink) @ t.components_
    np.testing.assert_allclose(covariance(t.transform(x)), expected, atol=1e-10)
    assert shrink.min() < 0.7  # the test data has a direction that eps visibly shrinks


def test_zca_matrix_is_symmetric_and_closest_to_the_data():
    x = correlated()
    zca = data.ZCAWhitening().fit(x)
    np.testing.assert_array_equal(zca.whitening_, zca.whitening_.T)
    eigenvalues = np.linalg.eigvalsh(zca.whitening_)
    assert (eigenvalues > 0).all()
    # ZCA is the whitening that moves the (centred) data least: PCA's rotation moves it more.
    centred = x - x.mean(axis=0)
    z, p = zca.transform(x), data.PCAWhitening().fit_transform(x)
    scale = np.sqrt(np.diag(np.cov(centred, rowvar=False)))
    assert np.linalg.norm(z - centred / scale) < np.linalg.norm(p - centred / scale)


def test_pca_matches_sklearn_up_to_sign():
    sklearn_pca = pytest.importorskip("sklearn.decomposition").PCA
    x = correlated(n=300, d=8, seed=("sklearn",))
    for k in (None, 3, 8):
        ours = data.PCAWhitening(n_components=k, eps=0.0).fit(x)
        theirs = sklearn_pca(n_components=k, whiten=True, svd_solver="full").fit(x)
        signs = np.sign((ours.components_ * theirs.components_).sum(axis=1))
        assert (np.abs(signs) == 1).all()
        assert_close(ours.components_ * signs[:, None], theirs.components_, kind="transcendental")
        assert_close(ours.explained_variance_, theirs.explained_variance_, kind="transcendental")
        assert_close(ours.transform(x) * signs, theirs.transform(x), kind="transcendental")


@pytest.mark.parametrize("cls", [data.PCAWhitening, data.ZCAWhitening])
def test_zero_variance_directions_and_rank_deficiency_give_no_nan(device, cls):
    base = correlated(n=50, d=4, seed=("rank",))
    # A constant feature and a copy of another: rank 4 of 6 features.
    x = np.column_stack([base, np.full(50, 3.0), base[:, 1]])
    for eps in (0.0, 1e-5):
        t = cls(eps=eps).fit(to_device(device, x))
        z = to_numpy(t.transform(to_device(device, x)))
        assert np.isfinite(z).all() and np.isfinite(t.explained_variance_).all()
        assert (t.explained_variance_[4:] == 0).all() and (t.explained_variance_[:4] > 0).all()
        c = covariance(z)
        # Four whitened directions (variance v / (v + eps) each); the two null ones are 0
        # (eps = 0) or rounding noise times 1 / sqrt(eps) (eps > 0).
        v = t.explained_variance_[:4]
        assert abs(np.trace(c) - (v / (v + eps)).sum()) < 1e-9
        if eps == 0.0 and cls is data.PCAWhitening:
            np.testing.assert_array_equal(t.scale_[4:], 0.0)
            np.testing.assert_allclose(z[:, 4:], 0.0, atol=1e-9)


def test_n_components_beyond_the_rank():
    x = correlated(n=5, d=10, seed=("tiny",))  # 5 samples: rank 4 after centring
    pca = data.PCAWhitening(n_components=8).fit(x)
    z = pca.transform(x)
    assert z.shape == (5, 8) and np.isfinite(z).all()
    np.testing.assert_allclose(np.cov(z[:, :4], rowvar=False), np.eye(4), atol=1e-4)
    np.testing.assert_allclose(z[:, 4:], 0.0, atol=1e-6)
    assert (pca.explained_variance_[4:] == 0).all()
    one = data.ZCAWhitening().fit(x[:1])  # one sample: every direction has variance 0
    assert np.isfinite(one.transform(x)).all()


@pytest.mark.parametrize("cls", [data.PCAWhitening, data.ZCAWhitening])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_and_dtype(device, cls, dtype):
    x = to_device(device, correlated(dtype=dtype))
    t = cls().fit(x)
    z = t.transform(x)
    assert z.dtype == dtype
    back = t.inverse_transform(z)
    assert back.dtype == dtype
    np.testing.assert_allclose(to_numpy(back), to_numpy(x), rtol=0, atol=1e-9 if dtype == np.float64 else 2e-4)


def test_per_sample_mean_subtraction(device):
    x = to_device(device, correlated(dtype=np.float32))
    z = data.PerSampleMeanSubtraction().fit_transform(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(to_numpy(z).mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(to_numpy(z), to_numpy(x) - to_numpy(x).mean(axis=1, keepdims=True), atol=1e-5)


def test_bad_input():
    x = correlated()
    for cls in (data.PCAWhitening, data.ZCAWhitening, data.PerSampleMeanSubtraction):
        with pytest.raises(data.NotFittedError):
            cls().transform(x)
        with pytest.raises(ValueError, match="finite"):
            cls().fit(np.where(x > 7, np.nan, x))
        with pytest.raises(TypeError, match="float32 or float64"):
            cls().fit(x.astype(np.int64))
        with pytest.raises(ValueError, match="features"):
            cls().fit(x).transform(x[:, :3])
    with pytest.raises(ValueError, match="n_components"):
        data.PCAWhitening(n_components=0)
    with pytest.raises(TypeError, match="n_components"):
        data.PCAWhitening(n_components=2.5)
    with pytest.raises(ValueError, match="n_components: expected at most 6"):
        data.PCAWhitening(n_components=7).fit(x)
    with pytest.raises(ValueError, match="eps"):
        data.ZCAWhitening(eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        data.PCAWhitening(eps=float("nan"))
    with pytest.raises(ValueError, match="features"):
        data.PCAWhitening(n_components=2).fit(x).inverse_transform(np.zeros((3, 6)))
