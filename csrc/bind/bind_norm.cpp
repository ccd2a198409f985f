// Bindings of batch, layer, weight and local response normalization. Each builds the call's
// Stream once in its prologue (call_stream(), GIL held) and passes it to every kernel it runs.
#include <optional>
#include <string>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/activation.h"
#include "ops/norm.h"

namespace fdnn::bind {
namespace {

std::string repr_str(py::handle h) { return py::repr(h).cast<std::string>(); }

// A 1-D per-feature parameter (gamma, beta, mean, inv_std, g) of length len, or None.
std::optional<TensorView> feature_array(py::handle obj, const char* name, int64_t len, const char* what, DType dtype,
                                        KeepAlive& keep) {
  auto t = optional_input_array(obj, name, keep);
  if (!t) return t;
  check_same_dtype(*t, name, dtype, "x");
  if (t->ndim != 1 || t->shape[0] != len)
    throw ValueError(std::string(name) + ": expected shape (" + what + ",) = (" + std::to_string(len) + ",), got " +
                     t->shape_str());
  return t;
}

TensorView required(const std::optional<TensorView>& t, const char* name) {
  if (!t) throw ValueError(std::string(name) + ": expected an array, got None");
  return *t;
}

double eps_arg(py::handle obj) {
  const double eps = float_arg(obj, "eps", "a value > 0");
  if (!(eps > 0.0)) throw ValueError("eps: expected a value > 0, got " + repr_str(obj));
  return eps;
}

// The gradient at the normalized values: dy itself, or, when the forward fused a ReLU, dy
// masked by its output y (y > 0), in a new array kept alive with the call's inputs.
TensorView through_activation(const TensorView& dy, const std::optional<TensorView>& y_view, Activation act,
                              KeepAlive& keep, Stream stream) {
  if (act == Activation::none) return dy;
  if (!y_view) throw ValueError("y: the forward output is required when activation is 'relu', got None");
  const TensorView& y = *y_view;
  check_same_dtype(y, "y", dy.dtype, "dy");
  check_same_shape(y, "y", dy, "dy");
  py::object masked_obj = py::none();
  const TensorView masked = new_array(masked_obj, dy.dtype, shape_of(dy));
  keep.push_back(masked_obj);
  py::gil_scoped_release release;
  dispatch(dy.dtype, [&](auto t) {
    using T = decltype(t);
    relu_backward_from_output<T>(masked.ptr<T>(), dy.ptr<T>(), y.ptr<T>(), dy.numel(), T(1), stream);
  });
  return masked;
}

// The backward's outputs (dx, dgamma, dbeta) from `out` (each None: allocated), with dgamma and
// dbeta of `d` entries, checked not to overlap each other or an input (dy as the caller gave it).
struct NormGrads {
  std::vector<py::object> objs;
  TensorView dx, dg, db;
};
NormGrads norm_grad_outputs(py::handle out, const TensorView& x, int64_t d, const TensorView& dy_in,
                            const std::optional<TensorView>& gamma, const TensorView& mean, const TensorView& inv_std,
                            const std::optional<TensorView>& y) {
  NormGrads g{out_tuple(out, 3, "(dx, dgamma, dbeta)"), {}, {}, {}};
  g.dx = output_or_new(g.objs[0], "out[0] (dx)", x.dtype, shape_of(x));
  g.dg = output_or_new(g.objs[1], "out[1] (dgamma)", x.dtype, {d});
  g.db = output_or_new(g.objs[2], "out[2] (dbeta)", x.dtype, {d});
  check_outputs_disjoint({{&g.dx, "out[0] (dx)"}, {&g.dg, "out[1] (dgamma)"}, {&g.db, "out[2] (dbeta)"}},
                         {{&dy_in, "dy"}, {&x, "x"}, {gamma ? &*gamma : nullptr, "gamma"}, {&mean, "mean"},
                          {&inv_std, "inv_std"}, {y ? &*y : nullptr, "y"}});
  return g;
}

struct BnShape {
  int64_t n, c, s;
};
BnShape bn_shape(const TensorView& x) {
  if (x.ndim < 2)
    throw ValueError("x: expected an array with ndim >= 2 (N, C, ...), got " + std::to_string(x.ndim) + "-D");
  BnShape b{x.shape[0], x.shape[1], 1};
  for (int i = 2; i < x.ndim; ++i) b.s *= x.shape[i];
  return b;
}

py::tuple batch_norm_py(py::object x_obj, py::object gamma_obj, py::object beta_obj, py::object rm_obj,
                        py::object rv_obj, bool training, py::object momentum_obj, py::object eps_obj,
                        py::object activation, py::object out) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const bool relu = activation_arg(activation) == Activation::relu;
  const TensorView x = input_array(x_obj, "x", keep);
  const BnShape b = bn_shape(x);
  const auto gamma = feature_array(gamma_obj, "gamma", b.c, "C", x.dtype, keep);
  const auto beta = feature_array(beta_obj, "beta", b.c, "C", x.dtype, keep);
  const double momentum = float_arg(momentum_obj, "momentum", "a value in [0, 1]");
  if (!(momentum >= 0.0 && momentum <= 1.0))
    throw ValueError("momentum: expected a value in [0, 1], got " + repr_str(momentum_obj));
  const double eps = eps_arg(eps_obj);
  std::optional<TensorView> rm, rv;
  if (!rm_obj.is_none()) rm = output_array(rm_obj, "running_mean", x.dtype, {b.c});
  if (!rv_obj.is_none()) rv = output_array(rv_obj, "running_var", x.dtype, {b.c});
  if (!training && !(rm && rv))
    throw ValueError(std::string(rm ? "running_var" : "running_mean") + ": required when training=False, got None");
  if (training && b.n * b.s <= 1)
    throw ValueError("x: batch norm in training needs more than 1 value per channel, got N * spatial = " +
                     std::to_string(b.n * b.s));
  std::vector<py::object> outs = out_tuple(out, 3, "(y, mean, inv_std)");
  const TensorView y = output_or_new(outs[0], "out[0] (y)", x.dtype, shape_of(x));
  const TensorView mean = output_or_new(outs[1], "out[1] (mean)", x.dtype, {b.c});
  const TensorView inv_std = output_or_new(outs[2], "out[2] (inv_std)", x.dtype, {b.c});
  check_outputs_disjoint({{&y, "out[0] (y)"}, {&mean, "out[1] (mean)"}, {&inv_std, "out[2] (inv_std)"},
                          {rm ? &*rm : nullptr, "running_mean"}, {rv ? &*rv : nullptr, "running_var"}},
                         {{&x, "x"}, {gamma ? &*gamma : nullptr, "gamma"}, {beta ? &*beta : nullptr, "beta"}});
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      batch_norm<T>(y.ptr<T>(), mean.ptr<T>(), inv_std.ptr<T>(), ptr_or_null<T>(rm), ptr_or_null<T>(rv), x.ptr<T>(),
                    ptr_or_null<T>(gamma), ptr_or_null<T>(beta), b.n, b.c, b.s, training, momentum, eps, relu, stream);
    });
  }
  return py::make_tuple(outs[0], outs[1], outs[2]);
}

py::tuple batch_norm_backward_py(py::object dy_obj, py::object x_obj, py::object gamma_obj, py::object mean_obj,
                                 py::object inv_std_obj, bool training, py::object y_obj, py::object activation,
                                 py::object out) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const Activation act = activation_arg(activation);
  const TensorView x = input_array(x_obj, "x", keep);
  const BnShape b = bn_shape(x);
  const TensorView dy_in = input_array(dy_obj, "dy", keep);
  check_same_dtype(dy_in, "dy", x.dtype, "x");
  check_same_shape(dy_in, "dy", x, "x");
  const auto gamma = feature_array(gamma_obj, "gamma", b.c, "C", x.dtype, keep);
  const TensorView mean = required(feature_array(mean_obj, "mean", b.c, "C", x.dtype, keep), "mean");
  const TensorView inv_std = required(feature_array(inv_std_obj, "inv_std", b.c, "C", x.dtype, keep), "inv_std");
  const auto y_view = optional_input_array(y_obj, "y", keep);
  const TensorView dy = through_activation(dy_in, y_view, act, keep, stream);
  const NormGrads g = norm_grad_outputs(out, x, b.c, dy_in, gamma, mean, inv_std, y_view);
  const TensorView &dx = g.dx, &dg = g.dg, &db = g.db;
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      batch_norm_backward<T>(dx.ptr<T>(), dg.ptr<T>(), db.ptr<T>(), dy.ptr<T>(), x.ptr<T>(), ptr_or_null<T>(gamma),
                             mean.ptr<T>(), inv_std.ptr<T>(), b.n, b.c, b.s, training, stream);
    });
  }
  return py::make_tuple(g.objs[0], g.objs[1], g.objs[2]);
}

struct LnShape {
  int64_t rows, d;
  std::vector<int64_t> stat_shape;
};
LnShape ln_shape(const TensorView& x) {
  if (x.ndim < 1) throw ValueError("x: expected an array with ndim >= 1, got 0-D");
  LnShape s{1, x.shape[x.ndim - 1], {}};
  for (int i = 0; i + 1 < x.ndim; ++i) {
    s.rows *= x.shape[i];
    s.stat_shape.push_back(x.shape[i]);
  }
  return s;
}

// mean / inv_std of layer norm: shape x.shape[:-1].
TensorView row_stat(py::handle obj, const char* name, const LnShape& s, const TensorView& x, KeepAlive& keep) {
  const TensorView t = input_array(obj, name, keep);
  check_same_dtype(t, name, x.dtype, "x");
  bool ok = t.ndim == static_cast<int>(s.stat_shape.size());
  for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[i] == s.stat_shape[i];
  if (!ok) {
    TensorView want;
    want.ndim = static_cast<int>(s.stat_shape.size());
    for (int i = 0; i < want.ndim; ++i) want.shape[i] = s.stat_shape[i];
    throw ValueError(std::string(name) + ": expected shape " + want.shape_str() + " (x.shape[:-1]), got " +
                     t.shape_str());
  }
  return t;
}

py::tuple layer_norm_py(py::object x_obj, py::object gamma_obj, py::object beta_obj, py::object eps_obj,
                        py::object activation, py::object out) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const bool relu = activation_arg(activation) == Activation::relu;
  const TensorView x = input_array(x_obj, "x", keep);
  const LnShape s = ln_shape(x);
  const auto gamma = feature_array(gamma_obj, "gamma", s.d, "D", x.dtype, keep);
  const auto beta = feature_array(beta_obj, "beta", s.d, "D", x.dtype, keep);
  const double eps = eps_arg(eps_obj);
  std::vector<py::object> outs = out_tuple(out, 3, "(y, mean, inv_std)");
  const TensorView y = output_or_new(outs[0], "out[0] (y)", x.dtype, shape_of(x));
  const TensorView mean = output_or_new(outs[1], "out[1] (mean)", x.dtype, s.stat_shape);
  const TensorView inv_std = output_or_new(outs[2], "out[2] (inv_std)", x.dtype, s.stat_shape);
  check_outputs_disjoint({{&y, "out[0] (y)"}, {&mean, "out[1] (mean)"}, {&inv_std, "out[2] (inv_std)"}},
                         {{&x, "x"}, {gamma ? &*gamma : nullptr, "gamma"}, {beta ? &*beta : nullptr, "beta"}});
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      layer_norm<T>(y.ptr<T>(), mean.ptr<T>(), inv_std.ptr<T>(), x.ptr<T>(), ptr_or_null<T>(gamma),
                    ptr_or_null<T>(beta), s.rows, s.d, eps, relu, stream);
    });
  }
  return py::make_tuple(outs[0], outs[1], outs[2]);
}

py::tuple layer_norm_backward_py(py::object dy_obj, py::object x_obj, py::object gamma_obj, py::object mean_obj,
                                 py::object inv_std_obj, py::object y_obj, py::object activation, py::object out) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const Activation act = activation_arg(activation);
  const TensorView x = input_array(x_obj, "x", keep);
  const LnShape s = ln_shape(x);
  const TensorView dy_in = input_array(dy_obj, "dy", keep);
  check_same_dtype(dy_in, "dy", x.dtype, "x");
  check_same_shape(dy_in, "dy", x, "x");
  const auto gamma = feature_array(gamma_obj, "gamma", s.d, "D", x.dtype, keep);
  const TensorView mean = row_stat(mean_obj, "mean", s, x, keep);
  const TensorView inv_std = row_stat(inv_std_obj, "inv_std", s, x, keep);
  const auto y_view = optional_input_array(y_obj, "y", keep);
  const TensorView dy = through_activation(dy_in, y_view, act, keep, stream);
  const NormGrads g = norm_grad_outputs(out, x, s.d, dy_in, gamma, mean, inv_std, y_view);
  const TensorView &dx = g.dx, &dg = g.dg, &db = g.db;
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      layer_norm_backward<T>(dx.ptr<T>(), dg.ptr<T>(), db.ptr<T>(), dy.ptr<T>(), x.ptr<T>(), ptr_or_null<T>(gamma),
                             mean.ptr<T>(), inv_std.ptr<T>(), s.rows, s.d, stream);
    });
  }
  return py::make_tuple(g.objs[0], g.objs[1], g.objs[2]);
}

struct WnShape {
  int64_t rows, d;
};
WnShape wn_shape(const TensorView& v) {
  if (v.ndim < 1) throw ValueError("v: expected an array with ndim >= 1 (out, ...), got 0-D");
  return {v.shape[0], v.shape[0] ? v.numel() / v.shape[0] : 0};
}

py::object weight_norm_py(py::object v_obj, py::object g_obj) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const TensorView v = input_array(v_obj, "v", keep);
  const WnShape s = wn_shape(v);
  const TensorView g = input_array(g_obj, "g", keep);
  check_same_dtype(g, "g", v.dtype, "v");
  if (g.ndim != 1 || g.shape[0] != s.rows)
    throw ValueError("g: expected shape (out,) = (" + std::to_string(s.rows) + ",), got " + g.shape_str());
  py::object w_obj = py::none();
  const TensorView w = new_array(w_obj, v.dtype, shape_of(v));
  {
    py::gil_scoped_release release;
    dispatch(v.dtype, [&](auto t) {
      using T = decltype(t);
      weight_norm<T>(w.ptr<T>(), v.ptr<T>(), g.ptr<T>(), s.rows, s.d, stream);
    });
  }
  return w_obj;
}

py::tuple weight_norm_backward_py(py::object dw_obj, py::object v_obj, py::object g_obj) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const TensorView v = input_array(v_obj, "v", keep);
  const WnShape s = wn_shape(v);
  const TensorView dw = input_array(dw_obj, "dw", keep);
  check_same_dtype(dw, "dw", v.dtype, "v");
  check_same_shape(dw, "dw", v, "v");
  const TensorView g = input_array(g_obj, "g", keep);
  check_same_dtype(g, "g", v.dtype, "v");
  if (g.ndim != 1 || g.shape[0] != s.rows)
    throw ValueError("g: expected shape (out,) = (" + std::to_string(s.rows) + ",), got " + g.shape_str());
  py::object dv_obj = py::none(), dg_obj = py::none();
  const TensorView dv = new_array(dv_obj, v.dtype, shape_of(v));
  const TensorView dg = new_array(dg_obj, v.dtype, {s.rows});
  {
    py::gil_scoped_release release;
    dispatch(v.dtype, [&](auto t) {
      using T = decltype(t);
      weight_norm_backward<T>(dv.ptr<T>(), dg.ptr<T>(), dw.ptr<T>(), v.ptr<T>(), g.ptr<T>(), s.rows, s.d, stream);
    });
  }
  return py::make_tuple(dv_obj, dg_obj);
}

struct LrnArgs {
  int64_t n, c, s, size;
  double alpha, beta, k;
};
LrnArgs lrn_args(const TensorView& x, py::handle size, py::handle alpha, py::handle beta, py::handle k) {
  if (x.ndim < 3)
    throw ValueError("x: expected an array with ndim >= 3 (N, C, ...), got " + std::to_string(x.ndim) + "-D");
  LrnArgs a{x.shape[0], x.shape[1], 1, int64_arg(size, "size"), float_arg(alpha, "alpha"), float_arg(beta, "beta"),
            float_arg(k, "k")};
  if (a.size < 1) throw ValueError("size: expected an integer >= 1, got " + repr_str(size));
  for (int i = 2; i < x.ndim; ++i) a.s *= x.shape[i];
  return a;
}

py::object lrn_py(py::object x_obj, py::object size, py::object alpha, py::object beta, py::object k) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const TensorView x = input_array(x_obj, "x", keep);
  const LrnArgs a = lrn_args(x, size, alpha, beta, k);
  py::object y_obj = py::none();
  const TensorView y = new_array(y_obj, x.dtype, shape_of(x));
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      local_response_norm<T>(y.ptr<T>(), x.ptr<T>(), a.n, a.c, a.s, a.size, a.alpha, a.beta, a.k, stream);
    });
  }
  return y_obj;
}

py::object lrn_backward_py(py::object dy_obj, py::object x_obj, py::object size, py::object alpha, py::object beta,
                           py::object k) {
  KeepAlive keep;
  const Stream stream = call_stream();
  const TensorView x = input_array(x_obj, "x", keep);
  const LrnArgs a = lrn_args(x, size, alpha, beta, k);
  const TensorView dy = input_array(dy_obj, "dy", keep);
  check_same_dtype(dy, "dy", x.dtype, "x");
  check_same_shape(dy, "dy", x, "x");
  py::object dx_obj = py::none();
  const TensorView dx = new_array(dx_obj, x.dtype, shape_of(x));
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      local_response_norm_backward<T>(dx.ptr<T>(), dy.ptr<T>(), x.ptr<T>(), a.n, a.c, a.s, a.size, a.alpha, a.beta,
                                      a.k, stream);
    });
  }
  return dx_obj;
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm", &batch_norm_py, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"), py::arg("activation"),
        py::arg("out"));
  m.def("batch_norm_backward", &batch_norm_backward_py, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("inv_std"), py::arg("training"), py::arg("y"), py::arg("activation"), py::arg("out"));
  m.def("layer_norm", &layer_norm_py, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
        py::arg("activation"), py::arg("out"));
  m.def("layer_norm_backward", &layer_norm_backward_py, py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("inv_std"), py::arg("y"), py::arg("activation"), py::arg("out"));
  m.def("weight_norm", &weight_norm_py, py::arg("v"), py::arg("g"));
  m.def("weight_norm_backward", &weight_norm_backward_py, py::arg("dw"), py::arg("v"), py::arg("g"));
  m.def("local_response_norm", &lrn_py, py::arg("x"), py::arg("size"), py::arg("alpha"), py::arg("beta"),
        py::arg("k"));
  m.def("local_response_norm_backward", &lrn_backward_py, py::arg("dy"), py::arg("x"), py::arg("size"),
        py::arg("alpha"), py::arg("beta"), py::arg("k"));
}

}  // namespace fdnn::bind
