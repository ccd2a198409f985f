// Bindings of linear / linear_backward: argument checks, output allocation, GIL release.
#include <string>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/linear.h"

namespace fdnn::bind {
namespace {

struct LinearShapes {
  int64_t n, in, out;
};

// x (n, in), w (out, in): the shapes every linear call shares.
LinearShapes check_x_w(const TensorView& x, const TensorView& w) {
  check_ndim(x, "x", 2);
  check_ndim(w, "w", 2);
  check_same_dtype(w, "w", x.dtype, "x");
  check_dim(w, "w", 1, x.shape[1], "w has shape (out_features, in_features) and x has in_features columns");
  const LinearShapes s{x.shape[0], x.shape[1], w.shape[0]};
  check_blas_int(s.n, "x.shape[0]");
  check_blas_int(s.in, "x.shape[1]");
  check_blas_int(s.out, "w.shape[0]");
  return s;
}

void check_bias(const TensorView& b, const LinearShapes& s, DType dtype) {
  check_ndim(b, "b", 1);
  check_same_dtype(b, "b", dtype, "x");
  check_dim(b, "b", 0, s.out, "one bias per output feature, w.shape[0]");
}

void check_rows_out(const TensorView& t, const char* name, const LinearShapes& s, DType dtype) {
  check_ndim(t, name, 2);
  check_same_dtype(t, name, dtype, "x");
  check_dim(t, name, 0, s.n, "one row per row of x");
  check_dim(t, name, 1, s.out, "one column per output feature, w.shape[0]");
}

py::object linear_py(py::object x_obj, py::object w_obj, py::object b_obj, py::object activation, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w = input_array(w_obj, "w", keep);
  const Activation act = activation_arg(activation);
  const LinearShapes s = check_x_w(x, w);
  const auto b = optional_input_array(b_obj, "b", keep);
  if (b) check_bias(*b, s, x.dtype);
  const TensorView y = output_or_new(out, "out", x.dtype, {s.n, s.out});
  check_no_overlap(y, "out", x, "x");
  check_no_overlap(y, "out", w, "w");
  if (b) check_no_overlap(y, "out", *b, "b");
  {
    py::gil_scoped_release release;
    if (x.dtype == DType::float32)
      linear<float>(y.ptr<float>(), x.ptr<float>(), w.ptr<float>(), ptr_or_null<float>(b), s.n, s.in, s.out, act,
                    stream);
    else
      linear<double>(y.ptr<double>(), x.ptr<double>(), w.ptr<double>(), ptr_or_null<double>(b), s.n, s.in, s.out,
                     act, stream);
  }
  return out;
}

py::tuple linear_backward_py(py::object dy_obj, py::object x_obj, py::object w_obj, py::object y_obj,
                             py::object activation, bool bias, bool input_grad, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w = input_array(w_obj, "w", keep);
  const Activation act = activation_arg(activation);
  const LinearShapes s = check_x_w(x, w);
  check_rows_out(dy, "dy", s, x.dtype);
  const auto y = optional_input_array(y_obj, "y", keep);
  if (act != Activation::none && !y)
    throw ValueError("y: the forward output is required when activation is " +
                     py::repr(activation).cast<std::string>() + ", got None");
  if (y) check_rows_out(*y, "y", s, x.dtype);

  // out = (dx, dw, db), each None to allocate.
  std::vector<py::object> outs = out_tuple(out, 3, "(dx, dw, db)");
  if (!input_grad && !outs[0].is_none())
    throw ValueError("out: dx was given but input_grad=False (no dx is computed)");
  if (!bias && !outs[2].is_none()) throw ValueError("out: db was given but bias=False (no db is computed)");

  std::optional<TensorView> dx, db;
  if (input_grad) dx = output_or_new(outs[0], "out[0] (dx)", x.dtype, {s.n, s.in});
  const TensorView dw = output_or_new(outs[1], "out[1] (dw)", x.dtype, {s.out, s.in});
  if (bias) db = output_or_new(outs[2], "out[2] (db)", x.dtype, {s.out});
  check_outputs_disjoint({{dx ? &*dx : nullptr, "out[0] (dx)"}, {&dw, "out[1] (dw)"}, {db ? &*db : nullptr, "out[2] (db)"}},
                         {{&dy, "dy"}, {&x, "x"}, {&w, "w"}, {y ? &*y : nullptr, "y"}});
  {
    py::gil_scoped_release release;
    if (x.dtype == DType::float32)
      linear_backward<float>(ptr_or_null<float>(dx), dw.ptr<float>(), ptr_or_null<float>(db), dy.ptr<float>(),
                             x.ptr<float>(), w.ptr<float>(), ptr_or_null<float>(y), s.n, s.in, s.out, act, stream);
    else
      linear_backward<double>(ptr_or_null<double>(dx), dw.ptr<double>(), ptr_or_null<double>(db),
                              dy.ptr<double>(), x.ptr<double>(), w.ptr<double>(), ptr_or_null<double>(y), s.n, s.in,
                              s.out, act, stream);
  }
  return py::make_tuple(outs[0], outs[1], outs[2]);
}

}  // namespace

void bind_linear(py::module_& m) {
  m.def("linear", &linear_py, py::arg("x"), py::arg("w"), py::arg("b") = py::none(),
        py::arg("activation") = py::none(), py::arg("out") = py::none(),
        "y = act(x @ w.T + b) with the bias and ReLU fused around one GEMM.");
  m.def("linear_backward", &linear_backward_py, py::arg("dy"), py::arg("x"), py::arg("w"),
        py::arg("y") = py::none(), py::arg("activation") = py::none(), py::arg("bias") = true,
        py::arg("input_grad") = true, py::arg("out") = py::none(),
        "(dx, dw, db) of linear; one fused pass for the ReLU mask and db, then two GEMMs.");
}

}  // namespace fdnn::bind
