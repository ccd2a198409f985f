// Bindings of dropout, DropConnect, Gaussian noise and the raw Philox generator.
#include <cmath>
#include <string>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/activation.h"
#include "ops/dropout.h"

namespace fdnn::bind {
namespace {

double drop_probability(py::handle obj) {
  const double p = float_arg(obj, "p", "a drop probability in [0, 1)");
  if (!(p >= 0.0 && p < 1.0))
    throw ValueError("p: expected a drop probability in [0, 1), got " + py::repr(obj).cast<std::string>());
  return p;
}

bool inverted_mode(py::handle mode) { return choice_arg(mode, "mode", {"inverted", "vanilla"}) == "inverted"; }

// x itself, or x copied into out.
py::object pass_through(py::object x_obj, const TensorView& x, py::object out, const char* x_name) {
  if (out.is_none()) return x_obj;
  const TensorView o = output_array(out, "out", x.dtype, shape_of(x));
  check_no_overlap(o, "out", x, x_name);
  out.attr("__setitem__")(py::ellipsis(), x_obj);
  return out;
}

// y = a(x) * (keep ? keep_scale : 0) for the (seed, offset) mask.
py::object apply_mask(const TensorView& x, const char* x_name, double p, uint64_t seed, uint64_t offset,
                      double keep_scale, bool relu, py::object out, Stream stream) {
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_no_overlap(y, "out", x, x_name);
  const uint32_t threshold = dropout_threshold(p);
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    dropout_apply<T>(y.ptr<T>(), x.ptr<T>(), x.numel(), seed, offset, threshold, static_cast<T>(keep_scale), relu,
                     stream);
  });
  return out;
}

// y = a(x) * scale, or x itself (copied into out) when that is the identity.
py::object scale_or_pass(py::object x_obj, const TensorView& x, const char* x_name, double scale, bool relu,
                         py::object out, Stream stream) {
  if (scale == 1.0 && !relu) return pass_through(x_obj, x, out, x_name);
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_no_overlap(y, "out", x, x_name);
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    scale_copy<T>(y.ptr<T>(), x.ptr<T>(), x.numel(), static_cast<T>(scale), relu, stream);
  });
  return out;
}

// The scalar arguments every dropout call checks.
struct DropoutArgs {
  double p;
  uint64_t seed, offset;
  bool inverted;
  double keep_scale() const { return inverted ? 1.0 / (1.0 - p) : 1.0; }  // of kept units in training
};
DropoutArgs dropout_args(py::handle p, py::handle seed, py::handle offset, py::handle mode) {
  return {drop_probability(p), uint64_arg(seed, "seed"), uint64_arg(offset, "offset"), inverted_mode(mode)};
}

// dropout (with its activation) and drop_connect (x_name "w", no activation).
py::object dropout_py(py::object x_obj, py::object p_obj, py::object seed_obj, py::object offset_obj, bool training,
                      py::object mode, Activation act, py::object out, const char* x_name) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, x_name, keep);
  const DropoutArgs d = dropout_args(p_obj, seed_obj, offset_obj, mode);
  const bool relu = act == Activation::relu;
  if (training && d.p > 0.0) return apply_mask(x, x_name, d.p, d.seed, d.offset, d.keep_scale(), relu, out, stream);
  return scale_or_pass(x_obj, x, x_name, training || d.inverted ? 1.0 : 1.0 - d.p, relu, out, stream);
}

// Gradient of training-mode dropout: the regenerated mask, or with activation="relu" the mask
// read off the forward's output y.
py::object dropout_backward_py(py::object dy_obj, py::object p_obj, py::object seed_obj, py::object offset_obj,
                               py::object mode, py::object y_obj, Activation act, py::object out,
                               const char* dy_name) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, dy_name, keep);
  const DropoutArgs d = dropout_args(p_obj, seed_obj, offset_obj, mode);
  const double scale = d.keep_scale();
  if (act == Activation::relu) {
    if (y_obj.is_none())
      throw ValueError("y: the forward output is required when activation is 'relu', got None");
    const TensorView y = input_array(y_obj, "y", keep);
    check_same_dtype(y, "y", dy.dtype, dy_name);
    check_same_shape(y, "y", dy, dy_name);
    const TensorView dx = output_or_new(out, "out", dy.dtype, shape_of(dy));
    check_no_overlap(dx, "out", dy, dy_name);
    check_no_overlap(dx, "out", y, "y");
    py::gil_scoped_release release;
    dispatch(dy.dtype, [&](auto t) {
      using T = decltype(t);
      relu_backward_from_output<T>(dx.ptr<T>(), dy.ptr<T>(), y.ptr<T>(), dy.numel(), static_cast<T>(scale), stream);
    });
    return out;
  }
  if (d.p == 0.0) return pass_through(dy_obj, dy, out, dy_name);
  return apply_mask(dy, dy_name, d.p, d.seed, d.offset, scale, false, out, stream);
}

#ifndef FDNN_CUDA_BINDINGS  // host-only helpers (no array arguments): the CPU module has them
py::array dropout_mask_py(py::object shape_obj, py::object p_obj, py::object seed_obj, py::object offset_obj) {
  const Stream stream = call_stream();
  const double p = drop_probability(p_obj);
  const uint64_t seed = uint64_arg(seed_obj, "seed");
  const uint64_t offset = uint64_arg(offset_obj, "offset");
  std::vector<py::ssize_t> shape;
  if (py::hasattr(shape_obj, "__index__")) {
    shape.push_back(int64_arg(shape_obj, "shape"));
  } else {
    if (!py::isinstance<py::sequence>(shape_obj) || py::isinstance<py::str>(shape_obj))
      throw TypeError("shape: expected an integer or a tuple of integers, got " + type_name(shape_obj));
    for (py::handle d : shape_obj) shape.push_back(int64_arg(d, "shape"));
  }
  for (py::ssize_t d : shape)
    if (d < 0) throw ValueError("shape: expected non-negative sizes, got " + py::repr(shape_obj).cast<std::string>());
  py::array_t<bool> mask(shape);
  int64_t n = 1;
  for (py::ssize_t d : shape) n *= d;
  uint8_t* data = reinterpret_cast<uint8_t*>(mask.mutable_data());
  const uint32_t threshold = dropout_threshold(p);
  {
    py::gil_scoped_release release;
    dropout_mask(data, n, seed, offset, threshold, stream);
  }
  return mask;
}

#endif

py::object gaussian_noise_py(py::object x_obj, py::object std_obj, py::object seed_obj, py::object offset_obj,
                             bool training, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const double std = float_arg(std_obj, "std", "a value >= 0");
  if (!(std >= 0.0)) throw ValueError("std: expected a value >= 0, got " + py::repr(std_obj).cast<std::string>());
  const uint64_t seed = uint64_arg(seed_obj, "seed");
  const uint64_t offset = uint64_arg(offset_obj, "offset");
  if (!training) return pass_through(x_obj, x, out, "x");
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_no_overlap(y, "out", x, "x");
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    gaussian_noise<T>(y.ptr<T>(), x.ptr<T>(), x.numel(), seed, offset, std, stream);
  });
  return out;
}

#ifndef FDNN_CUDA_BINDINGS
py::array philox_py(py::array_t<uint32_t, py::array::c_style | py::array::forcecast> counters,
                     py::array_t<uint32_t, py::array::c_style | py::array::forcecast> key) {
  const Stream stream = call_stream();
  if (counters.ndim() != 2 || counters.shape(1) != 4)
    throw ValueError("counters: expected shape (n, 4), got " + py::str(counters.attr("shape")).cast<std::string>());
  if (key.ndim() != 1 || key.shape(0) != 2)
    throw ValueError("key: expected shape (2,), got " + py::str(key.attr("shape")).cast<std::string>());
  py::array_t<uint32_t> out({counters.shape(0), py::ssize_t{4}});
  philox4x32_10_blocks(out.mutable_data(), counters.data(), counters.shape(0), key.data()[0], key.data()[1], stream);
  return out;
}

#endif

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout",
        [](py::object x, py::object p, py::object seed, py::object offset, bool training, py::object mode,
           py::object activation, py::object out) {
          return dropout_py(x, p, seed, offset, training, mode, activation_arg(activation), out, "x");
        },
        py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("training"), py::arg("mode"),
        py::arg("activation"), py::arg("out"));
  m.def("drop_connect",
        [](py::object w, py::object p, py::object seed, py::object offset, bool training, py::object mode,
           py::object out) { return dropout_py(w, p, seed, offset, training, mode, Activation::none, out, "w"); },
        py::arg("w"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("training"), py::arg("mode"),
        py::arg("out"));
  m.def("dropout_backward",
        [](py::object dy, py::object p, py::object seed, py::object offset, py::object mode, py::object y,
           py::object activation, py::object out) {
          return dropout_backward_py(dy, p, seed, offset, mode, y, activation_arg(activation), out, "dy");
        },
        py::arg("dy"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("mode"), py::arg("y"),
        py::arg("activation"), py::arg("out"));
  m.def("drop_connect_backward",
        [](py::object dw, py::object p, py::object seed, py::object offset, py::object mode, py::object out) {
          return dropout_backward_py(dw, p, seed, offset, mode, py::none(), Activation::none, out, "dw");
        },
        py::arg("dw"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("mode"), py::arg("out"));
#ifndef FDNN_CUDA_BINDINGS
  m.def("dropout_mask", &dropout_mask_py, py::arg("shape"), py::arg("p"), py::arg("seed"), py::arg("offset"));
#endif
  m.def("gaussian_noise", &gaussian_noise_py, py::arg("x"), py::arg("std"), py::arg("seed"), py::arg("offset"),
        py::arg("training"), py::arg("out"));
#ifndef FDNN_CUDA_BINDINGS
  m.def("_philox4x32_10", &philox_py, py::arg("counters"), py::arg("key"),
        "Philox4x32-10 of each row of counters (n, 4) with key (2,), for known-answer tests.");
#endif
}

}  // namespace fdnn::bind
