// Bindings of the recurrent cells over a sequence (ops/rnn.h): lstm_forward / gru_forward and
// their backwards. Argument checks, output and scratch allocation, GIL release. The dropout
// masks of the inputs and the weight drop are applied by python/fusednn/ops/rnn.py; these
// functions take the masked x and weights and the hidden-state mask.
#include <string>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/rnn.h"

namespace fdnn::bind {
namespace {

const char* cell_name(RnnCell cell) { return cell == RnnCell::lstm ? "LSTM" : "GRU"; }

struct Checked {
  RnnSizes s;
  DType dtype;
  int64_t G;
};

void check_shape3(const TensorView& t, const char* name, DType dtype, int64_t a, int64_t b, int64_t c) {
  check_same_dtype(t, name, dtype, "x");
  check_shape(t, name, {a, b, c});
}
void check_shape2(const TensorView& t, const char* name, DType dtype, int64_t a, int64_t b) {
  check_same_dtype(t, name, dtype, "x");
  check_shape(t, name, {a, b});
}
void check_shape1(const TensorView& t, const char* name, DType dtype, int64_t a) {
  check_same_dtype(t, name, dtype, "x");
  check_shape(t, name, {a});
}

// x (T, B, I), w_ih (G*H, I), w_hh (G*H, H): the sizes of the call.
Checked check_x_weights(RnnCell cell, const TensorView& x, const TensorView& w_ih, const TensorView& w_hh) {
  const int64_t G = rnn_gates(cell);
  check_ndim(x, "x", 3);
  if (x.shape[0] < 1 || x.shape[1] < 1)
    throw ValueError("x: expected shape (steps, batch, input_size) with steps >= 1 and batch >= 1, got " +
                     x.shape_str());
  check_ndim(w_hh, "weight_hh", 2);
  check_same_dtype(w_hh, "weight_hh", x.dtype, "x");
  const int64_t H = w_hh.shape[1];
  if (H < 1 || w_hh.shape[0] != G * H)
    throw ValueError(std::string("weight_hh: expected shape (") + std::to_string(G) +
                     " * hidden_size, hidden_size) with hidden_size >= 1 (the " + cell_name(cell) + "'s " +
                     std::to_string(G) + " gates), got " + w_hh.shape_str());
  check_ndim(w_ih, "weight_ih", 2);
  check_same_dtype(w_ih, "weight_ih", x.dtype, "x");
  check_dim(w_ih, "weight_ih", 0, G * H, "gates * hidden_size, as weight_hh.shape[0]");
  check_dim(w_ih, "weight_ih", 1, x.shape[2], "input_size, the last axis of x");
  const RnnSizes s{x.shape[0], x.shape[1], x.shape[2], H};
  check_blas_int(s.steps * s.batch, "steps * batch");
  check_blas_int(G * H, "gates * hidden_size");
  check_blas_int(s.in, "input_size");
  return {s, x.dtype, G};
}

void check_layer_norm(const std::optional<TensorView>& ln_w, const std::optional<TensorView>& ln_b, const Checked& c) {
  if (bool(ln_w) != bool(ln_b))
    throw ValueError(std::string("ln_weight, ln_bias: expected both or neither, got ") + (ln_w ? "ln_weight" : "ln_bias") +
                     " only");
  if (ln_w) check_shape1(*ln_w, "ln_weight", c.dtype, c.G * c.s.hidden);
  if (ln_b) check_shape1(*ln_b, "ln_bias", c.dtype, c.G * c.s.hidden);
}

RnnCell cell_arg(py::handle cell) { return choice_arg(cell, "cell", {"lstm", "gru"}) == "lstm" ? RnnCell::lstm : RnnCell::gru; }

py::tuple rnn_forward_py(RnnCell cell, py::object x_obj, py::object h0_obj, py::object c0_obj, py::object w_ih_obj,
                         py::object w_hh_obj, py::object b_ih_obj, py::object b_hh_obj, py::object ln_w_obj,
                         py::object ln_b_obj, py::object hmask_obj, py::object work_obj, bool gemms_only) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w_ih = input_array(w_ih_obj, "weight_ih", keep);
  const TensorView w_hh = input_array(w_hh_obj, "weight_hh", keep);
  const Checked c = check_x_weights(cell, x, w_ih, w_hh);
  RnnSizes s = c.s;
  s.gemms_only = gemms_only;
  const int64_t B = s.batch, H = s.hidden, gh = c.G * H;
  const TensorView h0 = input_array(h0_obj, "h0", keep);
  check_shape2(h0, "h0", c.dtype, B, H);
  std::optional<TensorView> c0;
  if (cell == RnnCell::lstm) {
    c0 = input_array(c0_obj, "c0", keep);
    check_shape2(*c0, "c0", c.dtype, B, H);
  } else if (!c0_obj.is_none()) {
    throw ValueError("c0: a GRU has no cell state, expected None");
  }
  const auto b_ih = optional_input_array(b_ih_obj, "bias_ih", keep);
  const auto b_hh = optional_input_array(b_hh_obj, "bias_hh", keep);
  if (b_ih) check_shape1(*b_ih, "bias_ih", c.dtype, gh);
  if (b_hh) check_shape1(*b_hh, "bias_hh", c.dtype, gh);
  const auto ln_w = optional_input_array(ln_w_obj, "ln_weight", keep);
  const auto ln_b = optional_input_array(ln_b_obj, "ln_bias", keep);
  check_layer_norm(ln_w, ln_b, c);
  const auto hmask = optional_input_array(hmask_obj, "hmask", keep);
  if (hmask) check_shape2(*hmask, "hmask", c.dtype, B, H);

  py::object y_obj = py::none(), gates_obj = py::none(), aux_obj = py::none(), xhat_obj = py::none(),
             rstd_obj = py::none();
  const TensorView y = new_array(y_obj, c.dtype, {s.steps, B, H});
  const TensorView gates = new_array(gates_obj, c.dtype, {s.steps, B, gh});
  const TensorView aux = new_array(aux_obj, c.dtype, {s.steps, B, H});
  std::optional<TensorView> xhat, rstd;
  if (ln_w) {
    xhat = new_array(xhat_obj, c.dtype, {s.steps, B, gh});
    rstd = new_array(rstd_obj, c.dtype, {s.steps, B, c.G});
  }
  const TensorView work = output_or_new(work_obj, "work", c.dtype, {rnn_forward_work(cell, s)});
  // The other outputs are new arrays; a given work array must not overlap what the kernel reads.
  check_outputs_disjoint({{&work, "work"}},
                         {{&x, "x"}, {&h0, "h0"}, {c0 ? &*c0 : nullptr, "c0"}, {&w_ih, "weight_ih"},
                          {&w_hh, "weight_hh"}, {b_ih ? &*b_ih : nullptr, "bias_ih"},
                          {b_hh ? &*b_hh : nullptr, "bias_hh"}, {ln_w ? &*ln_w : nullptr, "ln_weight"},
                          {ln_b ? &*ln_b : nullptr, "ln_bias"}, {hmask ? &*hmask : nullptr, "hmask"}});
  {
    py::gil_scoped_release release;
    dispatch(c.dtype, [&](auto t) {
      using T = decltype(t);
      rnn_forward<T>(cell, y.ptr<T>(), gates.ptr<T>(), aux.ptr<T>(), ptr_or_null<T>(xhat), ptr_or_null<T>(rstd),
                     work.ptr<T>(), x.ptr<T>(), h0.ptr<T>(), ptr_or_null<T>(c0), w_ih.ptr<T>(), w_hh.ptr<T>(),
                     ptr_or_null<T>(b_ih), ptr_or_null<T>(b_hh), ptr_or_null<T>(ln_w), ptr_or_null<T>(ln_b),
                     ptr_or_null<T>(hmask), s, stream);
    });
  }
  return py::make_tuple(y_obj, gates_obj, aux_obj, xhat_obj, rstd_obj);
}

py::tuple rnn_backward_py(RnnCell cell, py::object dy_obj, py::object dh_n_obj, py::object dc_n_obj, py::object x_obj,
                          py::object h0_obj, py::object c0_obj, py::object w_ih_obj, py::object w_hh_obj,
                          py::object ln_w_obj, py::object hmask_obj, py::object y_obj, py::object gates_obj,
                          py::object aux_obj, py::object xhat_obj, py::object rstd_obj, bool bias_ih, bool bias_hh,
                          bool input_grad, py::object work_obj, bool gemms_only) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const TensorView w_ih = input_array(w_ih_obj, "weight_ih", keep);
  const TensorView w_hh = input_array(w_hh_obj, "weight_hh", keep);
  const Checked c = check_x_weights(cell, x, w_ih, w_hh);
  RnnSizes s = c.s;
  s.gemms_only = gemms_only;
  const int64_t T_ = s.steps, B = s.batch, H = s.hidden, gh = c.G * H;
  const auto dy = optional_input_array(dy_obj, "dy", keep);
  if (dy) check_shape3(*dy, "dy", c.dtype, T_, B, H);
  const auto dh_n = optional_input_array(dh_n_obj, "dh_n", keep);
  if (dh_n) check_shape2(*dh_n, "dh_n", c.dtype, B, H);
  std::optional<TensorView> dc_n, c0;
  if (cell == RnnCell::lstm) {
    dc_n = optional_input_array(dc_n_obj, "dc_n", keep);
    if (dc_n) check_shape2(*dc_n, "dc_n", c.dtype, B, H);
    c0 = input_array(c0_obj, "c0", keep);
    check_shape2(*c0, "c0", c.dtype, B, H);
  } else {
    if (!dc_n_obj.is_none()) throw ValueError("dc_n: a GRU has no cell state, expected None");
    if (!c0_obj.is_none()) throw ValueError("c0: a GRU has no cell state, expected None");
  }
  const TensorView h0 = input_array(h0_obj, "h0", keep);
  check_shape2(h0, "h0", c.dtype, B, H);
  const auto ln_w = optional_input_array(ln_w_obj, "ln_weight", keep);
  if (ln_w) check_shape1(*ln_w, "ln_weight", c.dtype, gh);
  const auto hmask = optional_input_array(hmask_obj, "hmask", keep);
  if (hmask) check_shape2(*hmask, "hmask", c.dtype, B, H);
  const TensorView y = input_array(y_obj, "y", keep);
  check_shape3(y, "y", c.dtype, T_, B, H);
  const TensorView gates = input_array(gates_obj, "gates", keep);
  check_shape3(gates, "gates", c.dtype, T_, B, gh);
  const TensorView aux = input_array(aux_obj, "aux", keep);
  check_shape3(aux, "aux", c.dtype, T_, B, H);
  std::optional<TensorView> xhat, rstd;
  if (ln_w) {
    xhat = input_array(xhat_obj, "xhat", keep);
    check_shape3(*xhat, "xhat", c.dtype, T_, B, gh);
    rstd = input_array(rstd_obj, "rstd", keep);
    check_shape3(*rstd, "rstd", c.dtype, T_, B, c.G);
  } else if (!xhat_obj.is_none() || !rstd_obj.is_none()) {
    throw ValueError("xhat, rstd: saved layer-norm arrays given without ln_weight");
  }

  py::object dx_obj = py::none(), dh0_obj = py::none(), dc0_obj = py::none(), dw_ih_obj = py::none(),
             dw_hh_obj = py::none(), db_ih_obj = py::none(), db_hh_obj = py::none(), dln_w_obj = py::none(),
             dln_b_obj = py::none();
  std::optional<TensorView> dx, dc0, db_ih, db_hh, dln_w, dln_b;
  if (input_grad) dx = new_array(dx_obj, c.dtype, {T_, B, s.in});
  const TensorView dh0 = new_array(dh0_obj, c.dtype, {B, H});
  if (cell == RnnCell::lstm) dc0 = new_array(dc0_obj, c.dtype, {B, H});
  const TensorView dw_ih = new_array(dw_ih_obj, c.dtype, {gh, s.in});
  const TensorView dw_hh = new_array(dw_hh_obj, c.dtype, {gh, H});
  if (bias_ih) db_ih = new_array(db_ih_obj, c.dtype, {gh});
  if (bias_hh) db_hh = new_array(db_hh_obj, c.dtype, {gh});
  if (ln_w) {
    dln_w = new_array(dln_w_obj, c.dtype, {gh});
    dln_b = new_array(dln_b_obj, c.dtype, {gh});
  }
  if (gemms_only && work_obj.is_none())
    throw ValueError("work: gemms_only=True reads the pre-activation gradients from work (no pass writes them), "
                     "expected a zero-filled array, got None");
  const TensorView work = output_or_new(work_obj, "work", c.dtype, {rnn_backward_work(cell, s, bool(ln_w))});
  check_outputs_disjoint(
      {{&work, "work"}},
      {{dy ? &*dy : nullptr, "dy"}, {dh_n ? &*dh_n : nullptr, "dh_n"}, {dc_n ? &*dc_n : nullptr, "dc_n"},
       {&x, "x"}, {&h0, "h0"}, {c0 ? &*c0 : nullptr, "c0"}, {&w_ih, "weight_ih"}, {&w_hh, "weight_hh"},
       {ln_w ? &*ln_w : nullptr, "ln_weight"}, {hmask ? &*hmask : nullptr, "hmask"}, {&y, "y"}, {&gates, "gates"},
       {&aux, "aux"}, {xhat ? &*xhat : nullptr, "xhat"}, {rstd ? &*rstd : nullptr, "rstd"}});
  {
    py::gil_scoped_release release;
    dispatch(c.dtype, [&](auto t) {
      using T = decltype(t);
      rnn_backward<T>(cell, ptr_or_null<T>(dx), dh0.ptr<T>(), ptr_or_null<T>(dc0), dw_ih.ptr<T>(), dw_hh.ptr<T>(),
                      ptr_or_null<T>(db_ih), ptr_or_null<T>(db_hh), ptr_or_null<T>(dln_w), ptr_or_null<T>(dln_b),
                      work.ptr<T>(), ptr_or_null<T>(dy), ptr_or_null<T>(dh_n), ptr_or_null<T>(dc_n), x.ptr<T>(),
                      h0.ptr<T>(), ptr_or_null<T>(c0), w_ih.ptr<T>(), w_hh.ptr<T>(), ptr_or_null<T>(ln_w),
                      ptr_or_null<T>(hmask), y.ptr<T>(), gates.ptr<T>(), aux.ptr<T>(), ptr_or_null<T>(xhat),
                      ptr_or_null<T>(rstd), s, stream);
    });
  }
  return py::make_tuple(dx_obj, dh0_obj, dc0_obj, dw_ih_obj, dw_hh_obj, db_ih_obj, db_hh_obj, dln_w_obj, dln_b_obj);
}

}  // namespace

void bind_rnn(py::module_& m) {
  m.def(
      "rnn_forward",
      [](py::object cell, py::object x, py::object h0, py::object c0, py::object w_ih, py::object w_hh,
         py::object b_ih, py::object b_hh, py::object ln_w, py::object ln_b, py::object hmask, py::object work,
         bool gemms_only) {
        return rnn_forward_py(cell_arg(cell), x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_w, ln_b, hmask, work,
                              gemms_only);
      },
      py::arg("cell"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("weight_ih"), py::arg("weight_hh"),
      py::arg("bias_ih"), py::arg("bias_hh"), py::arg("ln_weight"), py::arg("ln_bias"), py::arg("hmask"),
      py::kw_only(), py::arg("work") = py::none(), py::arg("gemms_only") = false,
      "LSTM ('lstm') or GRU ('gru') over a time-major sequence: (y, gates, aux, xhat, rstd) (ops/rnn.h). "
      "work: the scratch array (rnn_forward_work elements), or None (allocated). gemms_only: the GEMMs "
      "alone, the pointwise passes skipped (bench_rnn's GEMM-share row; the outputs are then not the cell's).");
  m.def(
      "rnn_backward",
      [](py::object cell, py::object dy, py::object dh_n, py::object dc_n, py::object x, py::object h0, py::object c0,
         py::object w_ih, py::object w_hh, py::object ln_w, py::object hmask, py::object y, py::object gates,
         py::object aux, py::object xhat, py::object rstd, bool bias_ih, bool bias_hh, bool input_grad,
         py::object work, bool gemms_only) {
        return rnn_backward_py(cell_arg(cell), dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, ln_w, hmask, y, gates, aux,
                               xhat, rstd, bias_ih, bias_hh, input_grad, work, gemms_only);
      },
      py::arg("cell"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("x"), py::arg("h0"), py::arg("c0"),
      py::arg("weight_ih"), py::arg("weight_hh"), py::arg("ln_weight"), py::arg("hmask"), py::arg("y"),
      py::arg("gates"), py::arg("aux"), py::arg("xhat"), py::arg("rstd"), py::arg("bias_ih"), py::arg("bias_hh"),
      py::arg("input_grad"), py::kw_only(), py::arg("work") = py::none(), py::arg("gemms_only") = false,
      "Backward through time of rnn_forward: (dx, dh0, dc0, dweight_ih, dweight_hh, dbias_ih, dbias_hh, "
      "dln_weight, dln_bias), None where not computed. work and gemms_only as in rnn_forward (gemms_only "
      "needs work, zero-filled: the GEMMs read the pre-activation gradients from it).");
}

}  // namespace fdnn::bind
