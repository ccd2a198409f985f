// Bindings of softmax, log_softmax and softmax cross-entropy.
#include <string>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/xent.h"

namespace fdnn::bind {
namespace {

struct Rows {
  int64_t n, k;
};

// Any array of ndim >= 1, seen as rows over its last axis.
Rows rows_of(const TensorView& x, const char* name) {
  if (x.ndim < 1) throw ValueError(std::string(name) + ": expected an array with at least 1 dimension, got 0-D");
  const int64_t k = x.shape[x.ndim - 1];
  return {k ? x.numel() / k : 0, k};
}

py::object softmax_py(py::object x_obj, py::object out, bool log) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const Rows r = rows_of(x, "x");
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_no_overlap(y, "out", x, "x");
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    if (log)
      log_softmax<T>(y.ptr<T>(), x.ptr<T>(), r.n, r.k, stream);
    else
      softmax<T>(y.ptr<T>(), x.ptr<T>(), r.n, r.k, stream);
  });
  return out;
}

py::object softmax_backward_py(py::object dy_obj, py::object y_obj, py::object out, bool log) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const TensorView y = input_array(y_obj, "y", keep);
  check_same_dtype(dy, "dy", y.dtype, "y");
  check_same_shape(dy, "dy", y, "y");
  const Rows r = rows_of(y, "y");
  const TensorView dx = output_or_new(out, "out", y.dtype, shape_of(y));
  check_no_overlap(dx, "out", dy, "dy");
  check_no_overlap(dx, "out", y, "y");
  py::gil_scoped_release release;
  dispatch(y.dtype, [&](auto t) {
    using T = decltype(t);
    if (log)
      log_softmax_backward<T>(dx.ptr<T>(), dy.ptr<T>(), y.ptr<T>(), r.n, r.k, stream);
    else
      softmax_backward<T>(dx.ptr<T>(), dy.ptr<T>(), y.ptr<T>(), r.n, r.k, stream);
  });
  return out;
}

// Labels as a contiguous int64 array of length n with every value in [0, k) or ignore_index.
// The kernels read exactly the values checked here: host_indices returns a private copy (kept in
// `keep`), this loop checks that copy, and kernel_int64 hands the kernels that same copy (or a
// device copy made from it). The caller's array, which another Python thread may write once the
// GIL is released, is never read again, so a label changed after the check cannot index out of
// bounds.
const int64_t* checked_labels(py::handle obj, int64_t n, int64_t k, int64_t ignore_index, KeepAlive& keep) {
  const py::array_t<int64_t> l = host_indices(obj, "labels", n, "class indices", keep);
  const int64_t* p = l.data();
  for (int64_t i = 0; i < n; ++i)
    if ((p[i] < 0 || p[i] >= k) && p[i] != ignore_index)
      throw ValueError("labels: expected class indices in [0, " + std::to_string(k) + ") or ignore_index=" +
                       std::to_string(ignore_index) + ", got " + std::to_string(p[i]) + " at position " +
                       std::to_string(i));
  return kernel_int64(l, keep);
}

py::object xent_py(py::object logits_obj, py::object labels_obj, py::object label_smoothing_obj,
                   py::object smoothing_obj, py::object weight_obj, py::object ignore_index_obj,
                   py::object reduction_obj, bool with_grad, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView z = input_array(logits_obj, "logits", keep);
  check_ndim(z, "logits", 2);
  const int64_t n = z.shape[0], k = z.shape[1];
  const double eps = float_arg(label_smoothing_obj, "label_smoothing", "a value in [0, 1]");
  if (!(eps >= 0.0 && eps <= 1.0))
    throw ValueError("label_smoothing: expected a value in [0, 1], got " + py::repr(label_smoothing_obj).cast<std::string>());
  const Smoothing smoothing =
      choice_arg(smoothing_obj, "smoothing", {"others", "all"}) == "others" ? Smoothing::others : Smoothing::all;
  if (smoothing == Smoothing::others && k == 1 && eps > 0.0)
    throw ValueError("label_smoothing: smoothing='others' spreads eps over the K - 1 other classes, but K = 1");
  const std::string red = choice_arg(reduction_obj, "reduction", {"mean", "sum", "none"});
  const Reduction reduction = red == "mean" ? Reduction::mean : red == "sum" ? Reduction::sum : Reduction::none;
  const int64_t ignore_index = int64_arg(ignore_index_obj, "ignore_index");
  const auto weight = optional_input_array(weight_obj, "weight", keep);
  if (weight) {
    check_same_dtype(*weight, "weight", z.dtype, "logits");
    if (weight->ndim != 1 || weight->shape[0] != k)
      throw ValueError("weight: expected shape (K,) = (" + std::to_string(k) + ",), got " + weight->shape_str());
  }
  const int64_t* labels = checked_labels(labels_obj, n, k, ignore_index, keep);

  py::object losses = py::none();
  std::optional<TensorView> row_loss, dlogits;
  if (reduction == Reduction::none) row_loss = new_array(losses, z.dtype, {n});
  if (with_grad) {
    dlogits = output_or_new(out, "out", z.dtype, {n, k});
    check_no_overlap(*dlogits, "out", z, "logits");
    if (weight) check_no_overlap(*dlogits, "out", *weight, "weight");
  } else if (!out.is_none()) {
    throw ValueError("out: softmax_cross_entropy writes no array; use softmax_cross_entropy_with_grad");
  }
  double total = 0.0;
  {
    py::gil_scoped_release release;
    dispatch(z.dtype, [&](auto t) {
      using T = decltype(t);
      total = softmax_cross_entropy<T>(row_loss ? row_loss->ptr<T>() : nullptr,
                                       dlogits ? dlogits->ptr<T>() : nullptr, z.ptr<T>(), labels,
                                       weight ? weight->ptr<T>() : nullptr, n, k, ignore_index, eps, smoothing,
                                       reduction, stream);
    });
  }
  py::object loss = reduction == Reduction::none ? losses : numpy_scalar(total, z.dtype);
  if (with_grad) return py::make_tuple(loss, out);
  return loss;
}

}  // namespace

void bind_xent(py::module_& m) {
  m.def("softmax", [](py::object x, py::object out) { return softmax_py(x, out, false); }, py::arg("x"),
        py::arg("out") = py::none());
  m.def("log_softmax", [](py::object x, py::object out) { return softmax_py(x, out, true); }, py::arg("x"),
        py::arg("out") = py::none());
  m.def("softmax_backward", [](py::object dy, py::object y, py::object out) { return softmax_backward_py(dy, y, out, false); },
        py::arg("dy"), py::arg("y"), py::arg("out") = py::none());
  m.def("log_softmax_backward",
        [](py::object dy, py::object y, py::object out) { return softmax_backward_py(dy, y, out, true); },
        py::arg("dy"), py::arg("y"), py::arg("out") = py::none());
  m.def("softmax_cross_entropy", &xent_py, py::arg("logits"), py::arg("labels"), py::arg("label_smoothing"),
        py::arg("smoothing"), py::arg("weight"), py::arg("ignore_index"), py::arg("reduction"), py::arg("with_grad"),
        py::arg("out"));
}

}  // namespace fdnn::bind
