// Bindings of relu / relu_backward (relu in place with out=x).
#include "bind/array.h"
#include "bind/bind.h"
#include "ops/activation.h"

namespace fdnn::bind {
namespace {

// An elementwise kernel may write its output over its input when they are exactly the same
// array (same data, shape and strides: element i is read before it is written, by the same
// iteration), as torch's relu_; any other overlap is refused.
void check_same_or_disjoint(const TensorView& out, const char* out_name, const TensorView& in, const char* in_name) {
  bool same = out.data == in.data && out.ndim == in.ndim;
  for (int i = 0; same && i < out.ndim; ++i) same = out.shape[i] == in.shape[i] && out.strides[i] == in.strides[i];
  if (!same) check_no_overlap(out, out_name, in, in_name);
}

py::object relu_py(py::object x_obj, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_same_or_disjoint(y, "out", x, "x");
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    relu_apply<T>(y.ptr<T>(), x.ptr<T>(), x.numel(), stream);
  });
  return out;
}

py::object relu_backward_py(py::object dy_obj, py::object y_obj, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const TensorView y = input_array(y_obj, "y", keep);
  check_same_dtype(y, "y", dy.dtype, "dy");
  check_same_shape(y, "y", dy, "dy");
  const TensorView dx = output_or_new(out, "out", dy.dtype, shape_of(dy));
  check_no_overlap(dx, "out", dy, "dy");
  check_no_overlap(dx, "out", y, "y");
  py::gil_scoped_release release;
  dispatch(dy.dtype, [&](auto t) {
    using T = decltype(t);
    relu_backward_from_output<T>(dx.ptr<T>(), dy.ptr<T>(), y.ptr<T>(), dy.numel(), T(1), stream);
  });
  return out;
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("relu", &relu_py, py::arg("x"), py::arg("out"));
  m.def("relu_backward", &relu_backward_py, py::arg("dy"), py::arg("y"), py::arg("out"));
}

}  // namespace fdnn::bind
