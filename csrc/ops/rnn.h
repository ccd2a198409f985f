// Recurrent cells (LSTM, GRU) over a whole sequence: the element math shared by the CPU and CUDA
// builds, the per-step pointwise launchers and recurrent products each device defines, and the
// sequence drivers (plain C++ over linear<T> / linear_backward<T> / rnn_recurrent_product, so
// each device's GEMM runs them: cpu/gemm.h on the CPU, with W_hh packed once per sequence;
// cuBLASLt on the GPU).
//
// Layout (torch's): gates are the G blocks of H units, LSTM (i, f, g, o) with G = 4, GRU (r, z, n)
// with G = 3; w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H) or null. Sequences are time-major
// and contiguous: x (T, B, I) read as (T*B, I), y (T, B, H).
//
//   LSTM  a = x_t W_ih^T + b_ih + hm_{t-1} W_hh^T + b_hh        (hm: h masked by hmask, or h)
//         i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)
//         c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)
//   GRU   q = x_t W_ih^T + b_ih,  p = hm_{t-1} W_hh^T + b_hh
//         r = sigmoid(q_r + p_r), z = sigmoid(q_z + p_z), n = tanh(q_n + r p_n)
//         h_t = (1 - z) n + z h_{t-1}
//
// With layer norm (ln_w, ln_b of G*H entries), each gate's pre-activation above (the argument of
// its sigmoid or tanh) is normalized over its H units (eps kRnnLayerNormEps, biased variance) and
// scaled and shifted by that gate's ln_w and ln_b before the activation.
//
// The hidden-state mask hmask (B, H; values 0 or 1/(1-p)) multiplies h_{t-1} where it enters the
// recurrent GEMM only (variational dropout, Gal & Ghahramani); the state passed on and the
// outputs y are unmasked. Input masks are applied to x before the call (python/fusednn/ops/rnn.py).
//
// One input GEMM for all steps, then per step one recurrent GEMM and one fused pointwise pass
// (sums, layer norm, activations, cell update, the hidden mask). Backward through time: per step
// one pointwise pass and one GEMM (dh_{t-1} = dA_hh W_hh), then one GEMM each for dx, dW_ih,
// dW_hh over all steps. Every reduction is a fixed-order column sum (linear_backward's), so the
// results do not depend on the thread count.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"
#include "common/scratch.h"
#include "common/stream.h"
#include "common/vmath.h"
#include "ops/linear.h"

namespace fdnn {

enum class RnnCell { lstm, gru };

FDNN_HD inline int rnn_gates(RnnCell cell) { return cell == RnnCell::lstm ? 4 : 3; }

constexpr double kRnnLayerNormEps = 1e-5;

// ---- element math ----

// float: through vexp, so that the CPU loops vectorize (within a few ulps); double: the C library.
FDNN_HD inline float rnn_sigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }
FDNN_HD inline double rnn_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
// tanh(|x|) = (1 - e) / (1 + e), e = exp(-2|x|); below |x| = 1/8 the Taylor series to x^9 (no
// cancellation near 0). NaN stays NaN.
FDNN_HD inline float rnn_tanh(float x) {
  const float a = x < 0.0f ? -x : x;
  const float e = vexp(-2.0f * a);
  const float big = (1.0f - e) / (1.0f + e);
  const float a2 = a * a;
  const float small =
      a * (1.0f + a2 * (-1.0f / 3.0f + a2 * (2.0f / 15.0f + a2 * (-17.0f / 315.0f + a2 * (62.0f / 2835.0f)))));
  const float r = a < 0.125f ? small : big;
  return x < 0.0f ? -r : r;
}
FDNN_HD inline double rnn_tanh(double x) { return tanh(x); }

// LSTM cell of one unit from its four (normalized) pre-activations.
template <typename T>
FDNN_HD inline void lstm_cell(T ai, T af, T ag, T ao, T c_prev, T& i, T& f, T& g, T& o, T& c, T& h) {
  i = rnn_sigmoid(ai);
  f = rnn_sigmoid(af);
  g = rnn_tanh(ag);
  o = rnn_sigmoid(ao);
  c = f * c_prev + i * g;
  h = o * rnn_tanh(c);
}

// Its backward: dh and dc (the gradients of h_t and c_t from above and from step t+1) -> the
// gradients of the four pre-activations and of c_{t-1}.
template <typename T>
FDNN_HD inline void lstm_cell_backward(T i, T f, T g, T o, T c, T c_prev, T dh, T dc, T& dai, T& daf, T& dag, T& dao,
                                       T& dc_prev) {
  const T tc = rnn_tanh(c);
  const T dct = dc + dh * o * (T(1) - tc * tc);
  dai = dct * g * i * (T(1) - i);
  daf = dct * c_prev * f * (T(1) - f);
  dag = dct * i * (T(1) - g * g);
  dao = dh * tc * o * (T(1) - o);
  dc_prev = dct * f;
}

// GRU: h_t from the gates; and the backward of h_t = (1 - z) n + z h_prev to dn, dz and the
// direct part of dh_prev.
template <typename T> FDNN_HD inline T gru_output(T z, T n, T h_prev) { return (T(1) - z) * n + z * h_prev; }
template <typename T>
FDNN_HD inline void gru_output_backward(T z, T n, T h_prev, T dh, T& dn, T& dz, T& dh_prev_direct) {
  dn = dh * (T(1) - z);
  dz = dh * (h_prev - n);
  dh_prev_direct = dh * z;
}

// Layer norm of one gate segment: xhat = (a - mean) * rstd, rstd from the sum of the squared
// deviations from the mean (two passes, in double).
template <typename T> FDNN_HD inline T rnn_rstd(double centered_sum_sq, int64_t n) {
  return T(1.0 / sqrt(centered_sum_sq / double(n) + kRnnLayerNormEps));
}
// Its backward for one element: dpre = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
template <typename T> FDNN_HD inline T rnn_layer_norm_grad(T dxhat, T xhat, T rstd, T mean_d, T mean_dx) {
  return rstd * (dxhat - mean_d - xhat * mean_dx);
}

// ---- per-step pointwise passes (rnn_cpu.cpp, rnn_cuda.cu) ----

// One forward step for a batch of rows.
template <typename T> struct RnnStepForward {
  RnnCell cell;
  int64_t batch, hidden;
  T* gates;          // (B, G*H): in, the input projection of this step (with b_ih); out, the activated gates
  const T* rec;      // (B, G*H): the recurrent projection hm_{t-1} W_hh^T + b_hh
  const T* h_prev;   // (B, H), unmasked
  const T* c_prev;   // (B, H), LSTM only
  T* aux;            // (B, H): LSTM c_t; GRU p_n (the recurrent part of n, saved for backward)
  T* h;              // (B, H): h_t (a row of y)
  T* hm;             // (B, H): h_t * hmask for the next GEMM, or null (no mask)
  const T* hmask;    // (B, H) or null
  T* xhat;           // (B, G*H) normalized pre-activations, or null (no layer norm)
  T* rstd;           // (B, G)
  const T* ln_w;     // (G*H) or null
  const T* ln_b;     // (G*H) or null
};

// One backward step.
template <typename T> struct RnnStepBackward {
  RnnCell cell;
  int64_t batch, hidden;
  const T* gates;    // (B, G*H) activated gates of step t
  const T* aux;      // LSTM c_t, GRU p_n
  const T* h_prev;   // (B, H) unmasked
  const T* c_prev;   // LSTM
  const T* xhat;     // layer norm, or null
  const T* rstd;
  const T* ln_w;
  const T* hmask;    // or null
  const T* dy;       // (B, H) gradient of y_t, or null
  const T* rec;      // (B, H) dA_hh(t+1) W_hh (unmasked), or null at the last step
  T* carry;          // (B, H) in: the direct part of dh_t (dh_n at the last step); out: GRU dh z, LSTM 0
  T* dc;             // (B, H) LSTM: in dc_t, out dc_{t-1}
  T* dg_ih;          // (B, G*H) gradient of the pre-activations through W_ih (and b_ih)
  T* dg_hh;          // (B, G*H) through W_hh (and b_hh); the same array as dg_ih for the LSTM
  T* ln_p;           // (B, G*H) dpost * xhat, or null (no layer norm)
  T* ln_q;           // (B, G*H) dpost
};

template <typename T> void rnn_step_forward(const RnnStepForward<T>& s, Stream stream);
template <typename T> void rnn_step_backward(const RnnStepBackward<T>& s, Stream stream);
// dst[r, j] = src[r, j] * (mask ? mask[r % batch, j] : 1) for rows x cols; src null: 0.
template <typename T>
void rnn_scale_rows(T* dst, const T* src, const T* mask, int64_t rows, int64_t batch, int64_t cols, Stream stream);
// dst[b, j] = carry[b, j] + mask[b, j] * rec[b, j] (mask null: 1; carry null: 0).
template <typename T>
void rnn_combine(T* dst, const T* carry, const T* rec, const T* mask, int64_t batch, int64_t cols, Stream stream);

// The recurrent product of one step (rnn_cpu.cpp, rnn_cuda.cu): forward (backward false)
// rec (B, G*H) = a W_hh^T + b_hh, the same as linear<T>(rec, a, w_hh, b_hh, B, H, G*H); backward
// rec (B, H) = a W_hh (b_hh unused), linear_backward<T>'s dx. `packed` is what
// rnn_pack_recurrent returned for that direction (CPU: op(W_hh) packed once per sequence for the
// GEMM kernel, cpu/gemm.h's gemm_pack_b, so the steps do not pack the weights again; null where
// the GEMM does not read it, and always on the GPU, which runs linear).
template <typename T>
Buffer<T> rnn_pack_recurrent(bool backward, const T* w_hh, int64_t batch, int64_t hidden, int64_t gh, Stream stream);
template <typename T>
void rnn_recurrent_product(bool backward, T* rec, const T* a, const T* w_hh, const T* packed, const T* b_hh,
                           int64_t batch, int64_t hidden, int64_t gh, Stream stream);

// ---- sequence drivers ----

struct RnnSizes {
  int64_t steps, batch, in, hidden;
  // The GEMMs only (bench_rnn's GEMM-share row): the drivers skip the per-step pointwise passes
  // (rnn_step_forward, rnn_step_backward) and run everything else, so y, aux and the gradients
  // are not the cell's.
  bool gemms_only = false;
};

// Scratch (elements of T) that rnn_forward / rnn_backward need in `work`.
inline int64_t rnn_forward_work(RnnCell cell, const RnnSizes& s) {
  return s.batch * rnn_gates(cell) * s.hidden + s.batch * s.hidden;
}
inline int64_t rnn_backward_work(RnnCell cell, const RnnSizes& s, bool layer_norm) {
  const int64_t tb = s.steps * s.batch, gh = rnn_gates(cell) * s.hidden;
  return tb * gh * (cell == RnnCell::gru ? 2 : 1) + tb * s.hidden + 3 * s.batch * s.hidden +
         (layer_norm ? 2 * tb * gh : 0);
}

// Forward over the sequence. Outputs: y (T, B, H); gates (T, B, G*H) activated; aux (T, B, H)
// (LSTM c_t, GRU p_n); xhat (T, B, G*H) and rstd (T, B, G) when ln_w is given. c0 is the LSTM's
// (null: GRU). h_n = y[T-1]; the LSTM's c_n = aux[T-1].
template <typename T>
void rnn_forward(RnnCell cell, T* y, T* gates, T* aux, T* xhat, T* rstd, T* work, const T* x, const T* h0,
                 const T* c0, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, const T* ln_w,
                 const T* ln_b, const T* hmask, const RnnSizes& s, Stream stream) {
  const int64_t B = s.batch, H = s.hidden, gh = rnn_gates(cell) * H;
  T* rec = work;            // (B, G*H)
  T* hm = work + B * gh;    // (B, H)
  linear<T>(gates, x, w_ih, b_ih, s.steps * B, s.in, gh, Activation::none, stream);
  if (hmask) rnn_scale_rows<T>(hm, h0, hmask, B, B, H, stream);
  const Buffer<T> packed = rnn_pack_recurrent<T>(false, w_hh, B, H, gh, stream);
  for (int64_t t = 0; t < s.steps; ++t) {
    const T* h_prev = t == 0 ? h0 : y + (t - 1) * B * H;
    rnn_recurrent_product<T>(false, rec, hmask ? hm : h_prev, w_hh, packed.get(), b_hh, B, H, gh, stream);
    RnnStepForward<T> st{cell,
                         B,
                         H,
                         gates + t * B * gh,
                         rec,
                         h_prev,
                         cell == RnnCell::lstm ? (t == 0 ? c0 : aux + (t - 1) * B * H) : nullptr,
                         aux + t * B * H,
                         y + t * B * H,
                         hmask ? hm : nullptr,
                         hmask,
                         ln_w ? xhat + t * B * gh : nullptr,
                         ln_w ? rstd + t * B * rnn_gates(cell) : nullptr,
                         ln_w,
                         ln_b};
    if (!s.gemms_only) rnn_step_forward<T>(st, stream);
  }
}

// Backward through time. dy (T, B, H), dh_n, dc_n (B, H) may each be null (zero). Outputs (any
// of dx, db_ih, db_hh, dln_w, dln_b may be null to skip): dx (T, B, I), dh0, dc0 (LSTM) (B, H),
// dw_ih, dw_hh, db_ih, db_hh, dln_w, dln_b. The saved arrays are rnn_forward's.
template <typename T>
void rnn_backward(RnnCell cell, T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, T* dln_w, T* dln_b,
                  T* work, const T* dy, const T* dh_n, const T* dc_n, const T* x, const T* h0, const T* c0,
                  const T* w_ih, const T* w_hh, const T* ln_w, const T* hmask, const T* y, const T* gates,
                  const T* aux, const T* xhat, const T* rstd, const RnnSizes& s, Stream stream) {
  const int64_t B = s.batch, H = s.hidden, TB = s.steps * B, G = rnn_gates(cell), gh = G * H;
  const bool ln = ln_w != nullptr;
  T* dg_ih = work;
  T* dg_hh = cell == RnnCell::gru ? dg_ih + TB * gh : dg_ih;
  T* hm_all = (cell == RnnCell::gru ? dg_hh : dg_ih) + TB * gh;  // (T*B, H): the GEMM's h_{t-1} rows
  T* rec = hm_all + TB * H;                                      // (B, H)
  T* carry = rec + B * H;
  T* dc = carry + B * H;
  T* ln_p = ln ? dc + B * H : nullptr;  // (T*B, G*H)
  T* ln_q = ln ? ln_p + TB * gh : nullptr;

  rnn_scale_rows<T>(carry, dh_n, nullptr, B, B, H, stream);
  if (cell == RnnCell::lstm) rnn_scale_rows<T>(dc, dc_n, nullptr, B, B, H, stream);
  const Buffer<T> packed = rnn_pack_recurrent<T>(true, w_hh, B, H, gh, stream);
  for (int64_t t = s.steps - 1; t >= 0; --t) {
    if (t < s.steps - 1)  // dh_t through W_hh from step t+1
      rnn_recurrent_product<T>(true, rec, dg_hh + (t + 1) * B * gh, w_hh, packed.get(), nullptr, B, H, gh, stream);
    RnnStepBackward<T> st{cell,
                          B,
                          H,
                          gates + t * B * gh,
                          aux + t * B * H,
                          t == 0 ? h0 : y + (t - 1) * B * H,
                          cell == RnnCell::lstm ? (t == 0 ? c0 : aux + (t - 1) * B * H) : nullptr,
                          ln ? xhat + t * B * gh : nullptr,
                          ln ? rstd + t * B * G : nullptr,
                          ln_w,
                          hmask,
                          dy ? dy + t * B * H : nullptr,
                          t < s.steps - 1 ? rec : nullptr,
                          carry,
                          dc,
                          dg_ih + t * B * gh,
                          dg_hh + t * B * gh,
                          ln ? ln_p + t * B * gh : nullptr,
                          ln ? ln_q + t * B * gh : nullptr};
    if (!s.gemms_only) rnn_step_backward<T>(st, stream);
  }
  // dh0 = the direct part + hmask * (dA_hh(0) W_hh); dc0 what the last pass left.
  rnn_recurrent_product<T>(true, rec, dg_hh, w_hh, packed.get(), nullptr, B, H, gh, stream);
  rnn_combine<T>(dh0, cell == RnnCell::gru ? carry : nullptr, rec, hmask, B, H, stream);
  if (dc0) rnn_scale_rows<T>(dc0, dc, nullptr, B, B, H, stream);
  // The h_{t-1} rows that entered the recurrent GEMM: h0 and y[0 .. T-2], masked.
  rnn_scale_rows<T>(hm_all, h0, hmask, B, B, H, stream);
  if (s.steps > 1) rnn_scale_rows<T>(hm_all + B * H, y, hmask, TB - B, B, H, stream);
  // The weight gradients over all steps: one GEMM each (and the bias sums; the LSTM's dg_hh is its
  // dg_ih, so db_hh is db_ih, copied rather than summed again).
  const bool same_db = dg_hh == dg_ih && db_ih && db_hh;
  linear_backward<T>(dx, dw_ih, db_ih, dg_ih, x, w_ih, nullptr, TB, s.in, gh, Activation::none, stream);
  linear_backward<T>(nullptr, dw_hh, same_db ? nullptr : db_hh, dg_hh, hm_all, w_hh, nullptr, TB, H, gh,
                     Activation::none, stream);
  if (same_db) rnn_scale_rows<T>(db_hh, db_ih, nullptr, 1, 1, gh, stream);
  if (ln) {  // dln_w = column sums of dpost * xhat, dln_b = column sums of dpost
    if (dln_w) linear_backward<T>(nullptr, nullptr, dln_w, ln_p, ln_p, ln_p, nullptr, TB, 1, gh, Activation::none, stream);
    if (dln_b) linear_backward<T>(nullptr, nullptr, dln_b, ln_q, ln_q, ln_q, nullptr, TB, 1, gh, Activation::none, stream);
  }
}

// The explicit instantiations that both devices' files (rnn_cpu.cpp, rnn_cuda.cu) emit.
#define FDNN_RNN_INSTANTIATE(T)                                                                                    \
  template Buffer<T> rnn_pack_recurrent<T>(bool, const T*, int64_t, int64_t, int64_t, Stream);                    \
  template void rnn_recurrent_product<T>(bool, T*, const T*, const T*, const T*, const T*, int64_t, int64_t,      \
                                         int64_t, Stream);                                                        \
  template void rnn_forward<T>(RnnCell, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                               const T*, const T*, const T*, const T*, const T*, const RnnSizes&, Stream);        \
  template void rnn_backward<T>(RnnCell, T*, T*, T*, T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,    \
                                const T*, const T*, const T*, const T*, const T*, const T*, const T*, const T*,   \
                                const T*, const T*, const T*, const T*, const RnnSizes&, Stream);

}  // namespace fdnn
