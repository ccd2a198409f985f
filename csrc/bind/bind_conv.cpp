// Bindings of conv2d / conv2d_backward and the pooling ops: argument checks, output allocation,
// GIL release. The same code builds both modules; the int64 pooling indices are NumPy arrays in
// fusednn._C and CuPy arrays in fusednn._C_cuda (the library of the call's x or dy).
#include <string>
#include <utility>
#include <vector>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/conv.h"

namespace fdnn::bind {
namespace {

using Pair = std::pair<int64_t, int64_t>;

std::string show(py::handle obj) { return py::repr(obj).cast<std::string>(); }

bool is_integer(py::handle obj) {
  static const py::handle np_integer = py::object(py::module_::import("numpy").attr("integer")).release();
  return !py::isinstance<py::bool_>(obj) && (py::isinstance<py::int_>(obj) || py::isinstance(obj, np_integer));
}

// An integer >= minimum, or a pair (tuple or list of two) of them: (value along H, along W).
Pair pair_arg(py::handle obj, const char* name, int64_t minimum) {
  const std::string expected = minimum == 1 ? "a positive integer or a pair of them"
                                            : "an integer >= " + std::to_string(minimum) + " or a pair of them";
  std::vector<py::handle> items;
  if (is_integer(obj)) {
    items = {obj, obj};
  } else if ((py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) && py::len(obj) == 2) {
    for (py::handle item : obj) {
      if (!is_integer(item))
        throw TypeError(std::string(name) + ": expected " + expected + ", got " + show(obj));
      items.push_back(item);
    }
  } else {
    throw TypeError(std::string(name) + ": expected " + expected + ", got " + show(obj) + " (" + type_name(obj) + ")");
  }
  int64_t v[2];
  for (int i = 0; i < 2; ++i) {
    v[i] = int64_arg(items[i], name);
    if (v[i] < minimum || v[i] > (int64_t{1} << 31))
      throw ValueError(std::string(name) + ": expected " + expected + (v[i] < minimum ? "" : " below 2**31") +
                       ", got " + show(obj));
  }
  return {v[0], v[1]};
}

std::string pair_str(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

ConvShape conv_shape(const TensorView& x, const TensorView& w, py::handle stride, py::handle padding,
                     py::handle dilation, py::handle groups_obj) {
  check_ndim(x, "x", 4);
  check_ndim(w, "w", 4);
  check_same_dtype(w, "w", x.dtype, "x");
  const Pair st = pair_arg(stride, "stride", 1), pad = pair_arg(padding, "padding", 0),
             dil = pair_arg(dilation, "dilation", 1);
  const int64_t groups = int64_arg(groups_obj, "groups");
  if (groups < 1) throw ValueError("groups: expected an integer >= 1, got " + std::to_string(groups));
  ConvShape s{};
  s.n = x.shape[0], s.c_in = x.shape[1], s.h = x.shape[2], s.w = x.shape[3];
  s.c_out = w.shape[0], s.kh = w.shape[2], s.kw = w.shape[3];
  s.sh = st.first, s.sw = st.second, s.ph = pad.first, s.pw = pad.second, s.dh = dil.first, s.dw = dil.second;
  s.groups = groups;
  if (s.c_in % groups != 0)
    throw ValueError("groups: x has C_in = " + std::to_string(s.c_in) + " channels, not divisible by groups = " +
                     std::to_string(groups));
  if (s.c_out % groups != 0 || s.c_out < 1)
    throw ValueError("w: expected shape (C_out, C_in / groups, kH, kW) with C_out >= 1 divisible by groups = " +
                     std::to_string(groups) + ", got " + w.shape_str());
  if (w.shape[1] * groups != s.c_in || s.kh < 1 || s.kw < 1)
    throw ValueError("w: expected shape (C_out, C_in / groups, kH, kW) = (C_out, " + std::to_string(s.c_in / groups) +
                     ", kH >= 1, kW >= 1) for x with C_in = " + std::to_string(s.c_in) + " and groups = " +
                     std::to_string(groups) + ", got " + w.shape_str());
  s.oh = conv_out_size(s.h, s.kh, s.sh, s.ph, s.dh);
  s.ow = conv_out_size(s.w, s.kw, s.sw, s.pw, s.dw);
  if (s.oh < 1 || s.ow < 1)
    throw ValueError("x: the padded input " + pair_str(s.h + 2 * s.ph, s.w + 2 * s.pw) +
                     " is smaller than the dilated kernel " +
                     pair_str(s.dh * (s.kh - 1) + 1, s.dw * (s.kw - 1) + 1) + "; x has shape " + x.shape_str());
  check_blas_int(s.k(), "C_in / groups * kH * kW");
  check_blas_int(s.cout_g(), "C_out / groups");
  return s;
}

py::object conv2d_py(py::object x_obj, py::object w_obj, py::object b_obj, py::object stride, py::object padding,
                     py::object dilation, py::object groups, py::object activation, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w = input_array(w_obj, "w", keep);
  const Activation act = activation_arg(activation);
  const ConvShape s = conv_shape(x, w, stride, padding, dilation, groups);
  const auto b = optional_input_array(b_obj, "b", keep);
  if (b) {
    check_ndim(*b, "b", 1);
    check_same_dtype(*b, "b", x.dtype, "x");
    check_dim(*b, "b", 0, s.c_out, "one bias per output channel, w.shape[0]");
  }
  const TensorView y = output_or_new(out, "out", x.dtype, {s.n, s.c_out, s.oh, s.ow});
  check_outputs_disjoint({{&y, "out"}}, {{&x, "x"}, {&w, "w"}, {b ? &*b : nullptr, "b"}});
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      conv2d<T>(y.ptr<T>(), x.ptr<T>(), w.ptr<T>(), ptr_or_null<T>(b), s, act, stream);
    });
  }
  return out;
}

py::tuple conv2d_backward_py(py::object dy_obj, py::object x_obj, py::object w_obj, py::object y_obj,
                             py::object stride, py::object padding, py::object dilation, py::object groups,
                             py::object activation, bool bias, bool input_grad, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w = input_array(w_obj, "w", keep);
  const Activation act = activation_arg(activation);
  const ConvShape s = conv_shape(x, w, stride, padding, dilation, groups);
  const std::vector<int64_t> y_shape{s.n, s.c_out, s.oh, s.ow};
  check_same_dtype(dy, "dy", x.dtype, "x");
  check_shape(dy, "dy", y_shape);
  const auto y = optional_input_array(y_obj, "y", keep);
  if (act != Activation::none && !y)
    throw ValueError("y: the forward output is required when activation is " + show(activation) + ", got None");
  if (y) {
    check_same_dtype(*y, "y", x.dtype, "x");
    check_shape(*y, "y", y_shape);
  }
  std::vector<py::object> outs = out_tuple(out, 3, "(dx, dw, db)");
  if (!input_grad && !outs[0].is_none()) throw ValueError("out: dx was given but input_grad=False (no dx is computed)");
  if (!bias && !outs[2].is_none()) throw ValueError("out: db was given but bias=False (no db is computed)");
  std::optional<TensorView> dx, db;
  if (input_grad) dx = output_or_new(outs[0], "out[0] (dx)", x.dtype, {s.n, s.c_in, s.h, s.w});
  const TensorView dw = output_or_new(outs[1], "out[1] (dw)", x.dtype, shape_of(w));
  if (bias) db = output_or_new(outs[2], "out[2] (db)", x.dtype, {s.c_out});
  check_outputs_disjoint({{dx ? &*dx : nullptr, "out[0] (dx)"}, {&dw, "out[1] (dw)"}, {db ? &*db : nullptr, "out[2] (db)"}},
                         {{&dy, "dy"}, {&x, "x"}, {&w, "w"}, {y ? &*y : nullptr, "y"}});
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      conv2d_backward<T>(ptr_or_null<T>(dx), dw.ptr<T>(), ptr_or_null<T>(db), dy.ptr<T>(), x.ptr<T>(), w.ptr<T>(),
                         ptr_or_null<T>(y), s, act, stream);
    });
  }
  return py::make_tuple(outs[0], outs[1], outs[2]);
}

// ---- pooling

// (N, C, H, W) from an input_shape argument (a tuple or list of 4 integers >= 0).
std::vector<int64_t> input_shape_arg(py::handle obj) {
  if (!(py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) || py::len(obj) != 4)
    throw TypeError("input_shape: expected the forward input's shape (N, C, H, W), a tuple of 4 integers, got " +
                    show(obj));
  std::vector<int64_t> shape;
  for (py::handle item : obj) {
    if (!is_integer(item)) throw TypeError("input_shape: expected a tuple of 4 integers, got " + show(obj));
    const int64_t v = int64_arg(item, "input_shape");
    if (v < 0) throw ValueError("input_shape: expected sizes >= 0, got " + show(obj));
    shape.push_back(v);
  }
  return shape;
}

// The pooling geometry of an input of this shape (torch's rules: padding at most half the kernel).
PoolShape pool_shape(const std::vector<int64_t>& in, const char* in_name, py::handle kernel_size, py::handle stride,
                     py::handle padding) {
  const Pair k = pair_arg(kernel_size, "kernel_size", 1);
  const Pair st = stride.is_none() ? k : pair_arg(stride, "stride", 1);
  const Pair pad = pair_arg(padding, "padding", 0);
  if (pad.first > k.first / 2 || pad.second > k.second / 2)
    throw ValueError("padding: expected at most half the kernel size " + pair_str(k.first / 2, k.second / 2) +
                     " (kernel_size // 2), got " + pair_str(pad.first, pad.second));
  PoolShape s{};
  s.planes = in[0] * in[1], s.h = in[2], s.w = in[3];
  s.kh = k.first, s.kw = k.second, s.sh = st.first, s.sw = st.second, s.ph = pad.first, s.pw = pad.second;
  s.oh = conv_out_size(s.h, s.kh, s.sh, s.ph, 1);
  s.ow = conv_out_size(s.w, s.kw, s.sw, s.pw, 1);
  if (s.oh < 1 || s.ow < 1)
    throw ValueError(std::string(in_name) + ": the padded input " + pair_str(s.h + 2 * s.ph, s.w + 2 * s.pw) +
                     " is smaller than the kernel " + pair_str(s.kh, s.kw));
  return s;
}

std::vector<int64_t> dims(const TensorView& t) { return shape_of(t); }

// numpy in fusednn._C, cupy in fusednn._C_cuda: the library of the call's arrays.
py::module_ array_lib(py::handle like) { return py::module_::import(py::isinstance<py::array>(like) ? "numpy" : "cupy"); }

int64_t* int64_pointer(py::handle a, py::handle like) {
  const char* iface = py::isinstance<py::array>(like) ? "__array_interface__" : "__cuda_array_interface__";
  return reinterpret_cast<int64_t*>(a.attr(iface)["data"].cast<py::tuple>()[0].cast<uintptr_t>());
}

py::tuple max_pool2d_py(py::object x_obj, py::object kernel_size, py::object stride, py::object padding) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  check_ndim(x, "x", 4);
  const PoolShape s = pool_shape(dims(x), "x", kernel_size, stride, padding);
  const std::vector<int64_t> out_shape{x.shape[0], x.shape[1], s.oh, s.ow};
  py::object y_obj = py::none();
  const TensorView y = new_array(y_obj, x.dtype, out_shape);
  py::tuple idx_shape(4);
  for (size_t i = 0; i < 4; ++i) idx_shape[i] = py::int_(out_shape[i]);
  py::object idx_obj = array_lib(x_obj).attr("empty")(idx_shape, py::arg("dtype") = "int64");
  int64_t* idx = int64_pointer(idx_obj, x_obj);
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      max_pool2d<T>(y.ptr<T>(), idx, x.ptr<T>(), s, stream);
    });
  }
  return py::make_tuple(y_obj, idx_obj);
}

py::object max_pool2d_backward_py(py::object dy_obj, py::object indices_obj, py::object input_shape) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const std::vector<int64_t> in = input_shape_arg(input_shape);
  check_ndim(dy, "dy", 4);
  if (dy.shape[0] != in[0] || dy.shape[1] != in[1])
    throw ValueError("dy: expected shape (N, C, OH, OW) with (N, C) = " + pair_str(in[0], in[1]) +
                     " of input_shape, got " + dy.shape_str());
  if (!is_array(indices_obj))
    throw TypeError("indices: expected an array like dy's (max_pool2d's indices), got " + type_name(indices_obj));
  if (py::str(indices_obj.attr("dtype")).cast<std::string>() != "int64")
    throw TypeError("indices: expected dtype int64 (max_pool2d's indices), got " +
                    py::str(indices_obj.attr("dtype")).cast<std::string>());
  if (array_shape(indices_obj) != dims(dy))
    throw ValueError("indices: expected the shape of dy " + dy.shape_str() + ", got " +
                     py::str(indices_obj.attr("shape")).cast<std::string>());
  if (py::hasattr(indices_obj, "device") && py::hasattr(dy_obj, "device") &&
      !indices_obj.attr("device").equal(dy_obj.attr("device")))
    throw ValueError("indices: expected an array on dy's device");
  py::object idx = array_lib(dy_obj).attr("ascontiguousarray")(indices_obj);
  keep.push_back(idx);
  const int64_t* idx_ptr = int64_pointer(idx, dy_obj);
  PoolShape s{};
  s.planes = in[0] * in[1], s.h = in[2], s.w = in[3], s.oh = dy.shape[2], s.ow = dy.shape[3];
  py::object dx_obj = py::none();
  const TensorView dx = new_array(dx_obj, dy.dtype, in);
  int64_t bad = 0;
  {
    py::gil_scoped_release release;
    dispatch(dy.dtype, [&](auto t) {
      using T = decltype(t);
      bad = max_pool2d_backward<T>(dx.ptr<T>(), dy.ptr<T>(), idx_ptr, s, stream);
    });
  }
  if (bad)
    throw ValueError("indices: " + std::to_string(bad) + " indices outside [0, H * W) = [0, " +
                     std::to_string(in[2] * in[3]) + ") of input_shape " + show(input_shape));
  return dx_obj;
}

py::object avg_pool2d_py(py::object x_obj, py::object kernel_size, py::object stride, py::object padding,
                         bool count_include_pad) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  check_ndim(x, "x", 4);
  const PoolShape s = pool_shape(dims(x), "x", kernel_size, stride, padding);
  py::object y_obj = py::none();
  const TensorView y = new_array(y_obj, x.dtype, {x.shape[0], x.shape[1], s.oh, s.ow});
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      avg_pool2d<T>(y.ptr<T>(), x.ptr<T>(), s, count_include_pad, stream);
    });
  }
  return y_obj;
}

py::object avg_pool2d_backward_py(py::object dy_obj, py::object input_shape, py::object kernel_size,
                                  py::object stride, py::object padding, bool count_include_pad) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const std::vector<int64_t> in = input_shape_arg(input_shape);
  const PoolShape s = pool_shape(in, "input_shape", kernel_size, stride, padding);
  check_shape(dy, "dy", {in[0], in[1], s.oh, s.ow});
  py::object dx_obj = py::none();
  const TensorView dx = new_array(dx_obj, dy.dtype, in);
  {
    py::gil_scoped_release release;
    dispatch(dy.dtype, [&](auto t) {
      using T = decltype(t);
      avg_pool2d_backward<T>(dx.ptr<T>(), dy.ptr<T>(), s, count_include_pad, stream);
    });
  }
  return dx_obj;
}

py::object global_avg_pool2d_py(py::object x_obj) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  check_ndim(x, "x", 4);
  if (x.shape[2] * x.shape[3] == 0)
    throw ValueError("x: expected H, W >= 1 (the mean of an empty plane is undefined), got shape " + x.shape_str());
  py::object y_obj = py::none();
  const TensorView y = new_array(y_obj, x.dtype, {x.shape[0], x.shape[1]});
  {
    py::gil_scoped_release release;
    dispatch(x.dtype, [&](auto t) {
      using T = decltype(t);
      global_avg_pool2d<T>(y.ptr<T>(), x.ptr<T>(), x.shape[0] * x.shape[1], x.shape[2] * x.shape[3], stream);
    });
  }
  return y_obj;
}

py::object global_avg_pool2d_backward_py(py::object dy_obj, py::object input_shape) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView dy = input_array(dy_obj, "dy", keep);
  const std::vector<int64_t> in = input_shape_arg(input_shape);
  if (in[2] * in[3] == 0) throw ValueError("input_shape: expected H, W >= 1, got " + show(input_shape));
  check_shape(dy, "dy", {in[0], in[1]});
  py::object dx_obj = py::none();
  const TensorView dx = new_array(dx_obj, dy.dtype, in);
  {
    py::gil_scoped_release release;
    dispatch(dy.dtype, [&](auto t) {
      using T = decltype(t);
      global_avg_pool2d_backward<T>(dx.ptr<T>(), dy.ptr<T>(), in[0] * in[1], in[2] * in[3], stream);
    });
  }
  return dx_obj;
}

#ifndef FDNN_CUDA_BINDINGS
// Whether the CPU's conv2d takes the direct path (conv_direct_cpu.cpp) for these arguments.
bool conv_direct_applies_py(py::object x_obj, py::object w_obj, py::object stride, py::object padding,
                            py::object dilation, py::object groups) {
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w = input_array(w_obj, "w", keep);
  return conv_direct_applies(conv_shape(x, w, stride, padding, dilation, groups));
}
#endif

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d", &conv2d_py, py::arg("x"), py::arg("w"), py::arg("b") = py::none(), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1, py::arg("activation") = py::none(),
        py::arg("out") = py::none(), "y = act(conv2d(x, w) + b) on NCHW arrays, im2row blocks through the GEMM.");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("y") = py::none(),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("activation") = py::none(), py::arg("bias") = true, py::arg("input_grad") = true,
        py::arg("out") = py::none(), "(dx, dw, db) of conv2d.");
#ifndef FDNN_CUDA_BINDINGS  // the direct path is the CPU's
  m.def("_conv_direct_applies", &conv_direct_applies_py, py::arg("x"), py::arg("w"), py::arg("stride") = 1,
        py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        "Whether the CPU's conv2d and conv2d_backward take the direct path (no im2col, no GEMM) for these "
        "arguments (for tests).");
#endif
  m.def("max_pool2d", &max_pool2d_py, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, "(y, indices) of 2-D max pooling.");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("dy"), py::arg("indices"), py::arg("input_shape"),
        "dx of max_pool2d from its indices.");
  m.def("avg_pool2d", &avg_pool2d_py, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("count_include_pad") = true, "2-D average pooling.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("dy"), py::arg("input_shape"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("count_include_pad") = true,
        "dx of avg_pool2d.");
  m.def("global_avg_pool2d", &global_avg_pool2d_py, py::arg("x"), "(N, C) means of the (N, C, H, W) planes.");
  m.def("global_avg_pool2d_backward", &global_avg_pool2d_backward_py, py::arg("dy"), py::arg("input_shape"),
        "dx of global_avg_pool2d.");
}

}  // namespace fdnn::bind
