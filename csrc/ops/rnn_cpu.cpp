// CPU pointwise passes of the recurrent cells and the steps' recurrent products (rnn.h holds the
// math and the sequence drivers, whose GEMMs go through linear<T> and rnn_recurrent_product, i.e.
// cpu/gemm.h). Each pass runs over blocks of batch rows, as many as make the threads' shares
// even; a row's result does not depend on the block or the thread, so the outputs are bitwise
// equal for any thread count.
#include <algorithm>

#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/gemm.h"
#include "ops/rnn.h"

namespace fdnn {
namespace {

// Rows per block of a pass over `rows` rows of `cols` values: blocks of about 16K values, their
// number rounded up to a multiple of the thread count so that the threads get even shares (7
// blocks of 10 rows on 2 threads ran 40 rows on one thread and 24 on the other).
int64_t rows_per_block(int64_t rows, int64_t cols) {
  const int64_t blocks = round_up(ceil_div(rows * std::max<int64_t>(1, cols), int64_t{1} << 14), num_threads());
  return std::max<int64_t>(1, ceil_div(rows, blocks));
}

// Layer norm of the segment a[0, n) in place (a becomes ln_w * xhat + ln_b), saving xhat and rstd.
template <typename T>
FDNN_MULTIVERSION void layer_norm_segment(T* FDNN_RESTRICT a, T* FDNN_RESTRICT xhat, T* rstd_out,
                                          const T* FDNN_RESTRICT w, const T* FDNN_RESTRICT b, int64_t n) {
  double sum = 0, sum_sq = 0;
  for (int64_t j = 0; j < n; ++j) sum += double(a[j]);
  const double mean = sum / double(n);
  for (int64_t j = 0; j < n; ++j) {
    const double d = double(a[j]) - mean;
    sum_sq += d * d;
  }
  const T rstd = rnn_rstd<T>(sum_sq, n);
  const T m = T(mean);
  for (int64_t j = 0; j < n; ++j) {
    const T xh = (a[j] - m) * rstd;
    xhat[j] = xh;
    a[j] = xh * w[j] + b[j];
  }
  *rstd_out = rstd;
}

// Backward of layer_norm_segment: d (in: gradient of the normalized output; out: of the input),
// with p = d * xhat and q = d saved for the ln_w / ln_b sums.
template <typename T>
FDNN_MULTIVERSION void layer_norm_segment_backward(T* FDNN_RESTRICT d, T* FDNN_RESTRICT p, T* FDNN_RESTRICT q,
                                                   const T* FDNN_RESTRICT xhat, T rstd, const T* FDNN_RESTRICT w,
                                                   int64_t n) {
  double sd = 0, sdx = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = d[j] * xhat[j];
    q[j] = d[j];
    const T dxh = d[j] * w[j];
    sd += double(dxh);
    sdx += double(dxh * xhat[j]);
  }
  const T mean_d = T(sd / double(n)), mean_dx = T(sdx / double(n));
  for (int64_t j = 0; j < n; ++j) d[j] = rnn_layer_norm_grad(d[j] * w[j], xhat[j], rstd, mean_d, mean_dx);
}

template <typename T> FDNN_MULTIVERSION void add_rows(T* FDNN_RESTRICT a, const T* FDNN_RESTRICT r, int64_t n) {
  for (int64_t k = 0; k < n; ++k) a[k] += r[k];
}

template <typename T>
FDNN_MULTIVERSION void lstm_units(T* FDNN_RESTRICT a, const T* FDNN_RESTRICT c_prev, T* FDNN_RESTRICT c_out,
                                  T* FDNN_RESTRICT h_out, T* FDNN_RESTRICT hm, const T* FDNN_RESTRICT mask,
                                  int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    T i, f, g, o, c, h;
    lstm_cell(a[j], a[H + j], a[2 * H + j], a[3 * H + j], c_prev[j], i, f, g, o, c, h);
    a[j] = i;
    a[H + j] = f;
    a[2 * H + j] = g;
    a[3 * H + j] = o;
    c_out[j] = c;
    h_out[j] = h;
  }
  if (hm)
    for (int64_t j = 0; j < H; ++j) hm[j] = h_out[j] * mask[j];
}

template <typename T> FDNN_MULTIVERSION void sigmoid_rows(T* FDNN_RESTRICT a, int64_t n) {
  for (int64_t k = 0; k < n; ++k) a[k] = rnn_sigmoid(a[k]);
}

// GRU: the candidate's pre-activation an += r * p_n, saving p_n in aux.
template <typename T>
FDNN_MULTIVERSION void gru_candidate(T* FDNN_RESTRICT an, T* FDNN_RESTRICT aux, const T* FDNN_RESTRICT r,
                                     const T* FDNN_RESTRICT pn, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    aux[j] = pn[j];
    an[j] += r[j] * pn[j];
  }
}

// GRU: n = tanh(an) in place, h = (1 - z) n + z h_prev, and hm = h * mask.
template <typename T>
FDNN_MULTIVERSION void gru_units(T* FDNN_RESTRICT an, T* FDNN_RESTRICT h, T* FDNN_RESTRICT hm,
                                 const T* FDNN_RESTRICT z, const T* FDNN_RESTRICT h_prev, const T* FDNN_RESTRICT mask,
                                 int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    an[j] = rnn_tanh(an[j]);
    h[j] = gru_output(z[j], an[j], h_prev[j]);
  }
  if (hm)
    for (int64_t j = 0; j < H; ++j) hm[j] = h[j] * mask[j];
}

template <typename T>
void step_forward_rows(const RnnStepForward<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.hidden, G = rnn_gates(s.cell), gh = G * H;
  for (int64_t b = b0; b < b1; ++b) {
    T* a = s.gates + b * gh;
    const T* rec = s.rec + b * gh;
    T* hm = s.hm ? s.hm + b * H : nullptr;
    const T* mask = s.hmask ? s.hmask + b * H : nullptr;
    if (s.cell == RnnCell::lstm) {
      add_rows(a, rec, gh);
      if (s.xhat)
        for (int64_t g = 0; g < G; ++g)
          layer_norm_segment(a + g * H, s.xhat + b * gh + g * H, s.rstd + b * G + g, s.ln_w + g * H,
                             s.ln_b + g * H, H);
      lstm_units(a, s.c_prev + b * H, s.aux + b * H, s.h + b * H, hm, mask, H);
    } else {
      add_rows(a, rec, 2 * H);  // r and z
      if (s.xhat)
        for (int64_t g = 0; g < 2; ++g)
          layer_norm_segment(a + g * H, s.xhat + b * gh + g * H, s.rstd + b * G + g, s.ln_w + g * H,
                             s.ln_b + g * H, H);
      sigmoid_rows(a, 2 * H);
      T* an = a + 2 * H;
      gru_candidate(an, s.aux + b * H, a, rec + 2 * H, H);
      if (s.xhat)
        layer_norm_segment(an, s.xhat + b * gh + 2 * H, s.rstd + b * G + 2, s.ln_w + 2 * H, s.ln_b + 2 * H, H);
      gru_units(an, s.h + b * H, hm, a + H, s.h_prev + b * H, mask, H);
    }
  }
}

// dh = carry + dy + mask * rec, the total gradient of h_t, into dh.
template <typename T>
FDNN_MULTIVERSION void total_dh(T* FDNN_RESTRICT dh, const T* FDNN_RESTRICT carry, const T* FDNN_RESTRICT dy,
                                const T* FDNN_RESTRICT rec, const T* FDNN_RESTRICT mask, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    T v = carry[j];
    if (dy) v += dy[j];
    if (rec) v += mask ? mask[j] * rec[j] : rec[j];
    dh[j] = v;
  }
}

template <typename T>
FDNN_MULTIVERSION void lstm_units_backward(T* FDNN_RESTRICT dg, T* FDNN_RESTRICT dc, const T* FDNN_RESTRICT gt,
                                           const T* FDNN_RESTRICT c, const T* FDNN_RESTRICT c_prev,
                                           const T* FDNN_RESTRICT dh, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    T dai, daf, dag, dao, dcp;
    lstm_cell_backward(gt[j], gt[H + j], gt[2 * H + j], gt[3 * H + j], c[j], c_prev[j], dh[j], dc[j], dai, daf, dag,
                       dao, dcp);
    dg[j] = dai;
    dg[H + j] = daf;
    dg[2 * H + j] = dag;
    dg[3 * H + j] = dao;
    dc[j] = dcp;
  }
}

// GRU backward through h = (1 - z) n + z h_prev and the activations: dh (in) -> carry = dh z,
// dn_pre = dh (1 - z) (1 - n^2) and dz_pre = dh (h_prev - n) z (1 - z).
template <typename T>
FDNN_MULTIVERSION void gru_units_backward(T* FDNN_RESTRICT carry, T* FDNN_RESTRICT dn_pre, T* FDNN_RESTRICT dz_pre,
                                          const T* FDNN_RESTRICT z, const T* FDNN_RESTRICT n,
                                          const T* FDNN_RESTRICT h_prev, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    T dn, dz, direct;
    gru_output_backward(z[j], n[j], h_prev[j], carry[j], dn, dz, direct);
    carry[j] = direct;
    dn_pre[j] = dn * (T(1) - n[j] * n[j]);
    dz_pre[j] = dz * z[j] * (T(1) - z[j]);
  }
}

// GRU: from the candidate's pre-activation gradient sn, dr_pre = sn p_n r (1 - r) and the
// recurrent part of n's, sn r.
template <typename T>
FDNN_MULTIVERSION void gru_reset_backward(T* FDNN_RESTRICT dr_pre, T* FDNN_RESTRICT dpn, const T* FDNN_RESTRICT sn,
                                          const T* FDNN_RESTRICT r, const T* FDNN_RESTRICT pn, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    dr_pre[j] = sn[j] * pn[j] * r[j] * (T(1) - r[j]);
    dpn[j] = sn[j] * r[j];
  }
}

template <typename T>
void step_backward_rows(const RnnStepBackward<T>& s, int64_t b0, int64_t b1) {
  const int64_t H = s.hidden, G = rnn_gates(s.cell), gh = G * H;
  for (int64_t b = b0; b < b1; ++b) {
    const T* gt = s.gates + b * gh;
    T* carry = s.carry + b * H;
    T* dg = s.dg_ih + b * gh;
    // dh_t, kept in carry (it is read once, then replaced).
    total_dh(carry, carry, s.dy ? s.dy + b * H : nullptr, s.rec ? s.rec + b * H : nullptr,
             s.hmask ? s.hmask + b * H : nullptr, H);
    if (s.cell == RnnCell::lstm) {
      lstm_units_backward(dg, s.dc + b * H, gt, s.aux + b * H, s.c_prev + b * H, carry, H);
      std::fill(carry, carry + H, T(0));
      if (s.ln_p)
        for (int64_t g = 0; g < G; ++g)
          layer_norm_segment_backward(dg + g * H, s.ln_p + b * gh + g * H, s.ln_q + b * gh + g * H,
                                      s.xhat + b * gh + g * H, s.rstd[b * G + g], s.ln_w + g * H, H);
    } else {
      T* dgh = s.dg_hh + b * gh;
      gru_units_backward(carry, dg + 2 * H, dg + H, gt + H, gt + 2 * H, s.h_prev + b * H, H);
      if (s.ln_p)
        layer_norm_segment_backward(dg + 2 * H, s.ln_p + b * gh + 2 * H, s.ln_q + b * gh + 2 * H,
                                    s.xhat + b * gh + 2 * H, s.rstd[b * G + 2], s.ln_w + 2 * H, H);
      gru_reset_backward(dg, dgh + 2 * H, dg + 2 * H, gt, s.aux + b * H, H);
      if (s.ln_p)
        for (int64_t g = 0; g < 2; ++g)
          layer_norm_segment_backward(dg + g * H, s.ln_p + b * gh + g * H, s.ln_q + b * gh + g * H,
                                      s.xhat + b * gh + g * H, s.rstd[b * G + g], s.ln_w + g * H, H);
      std::copy(dg, dg + 2 * H, dgh);
    }
  }
}

}  // namespace

template <typename T> void rnn_step_forward(const RnnStepForward<T>& s, Stream) {
  const int64_t gh = rnn_gates(s.cell) * s.hidden;
  parallel_for(s.batch, rows_per_block(s.batch, gh), 8 * gh,
               [&](int64_t b0, int64_t b1) { step_forward_rows(s, b0, b1); });
}

template <typename T> void rnn_step_backward(const RnnStepBackward<T>& s, Stream) {
  const int64_t gh = rnn_gates(s.cell) * s.hidden;
  parallel_for(s.batch, rows_per_block(s.batch, gh), 8 * gh,
               [&](int64_t b0, int64_t b1) { step_backward_rows(s, b0, b1); });
}

template <typename T>
void rnn_scale_rows(T* dst, const T* src, const T* mask, int64_t rows, int64_t batch, int64_t cols, Stream) {
  parallel_for(rows, rows_per_block(rows, cols), cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* d = dst + r * cols;
      if (!src) {
        std::fill(d, d + cols, T(0));
      } else if (!mask) {
        std::copy(src + r * cols, src + (r + 1) * cols, d);
      } else {
        const T* m = mask + (r % batch) * cols;
        const T* x = src + r * cols;
        for (int64_t j = 0; j < cols; ++j) d[j] = x[j] * m[j];
      }
    }
  });
}

template <typename T>
void rnn_combine(T* dst, const T* carry, const T* rec, const T* mask, int64_t batch, int64_t cols, Stream) {
  const int64_t n = batch * cols;
  for (int64_t i = 0; i < n; ++i) dst[i] = (carry ? carry[i] : T(0)) + (mask ? mask[i] * rec[i] : rec[i]);
}

// The step's GEMM (gemm's arguments of linear<T> and linear_backward<T>'s dx) with op(W_hh)
// packed once per sequence where the GEMM kernel that the product's size picks reads it.
template <typename T>
Buffer<T> rnn_pack_recurrent(bool backward, const T* w_hh, int64_t batch, int64_t hidden, int64_t gh, Stream) {
  const int64_t n = backward ? hidden : gh, k = backward ? gh : hidden;
  const int64_t size = gemm_packed_b_size<T>(n, k);
  if (size == 0 || !gemm_reads_packed_b(batch, n, k)) return Buffer<T>();
  Buffer<T> packed = scratch<T>(size);
  gemm_pack_b<T>(/*trans_b=*/!backward, n, k, w_hh, packed.get());
  return packed;
}

template <typename T>
void rnn_recurrent_product(bool backward, T* rec, const T* a, const T* w_hh, const T* packed, const T* b_hh,
                           int64_t batch, int64_t hidden, int64_t gh, Stream) {
  if (backward)  // (B x G*H) @ (G*H x H)
    gemm_with_packed_b<T>(false, false, batch, hidden, gh, a, w_hh, packed, rec, nullptr, false);
  else  // (B x H) @ W_hh^T + b_hh
    gemm_with_packed_b<T>(false, true, batch, gh, hidden, a, w_hh, packed, rec, b_hh, false);
}

template void rnn_step_forward<float>(const RnnStepForward<float>&, Stream);
template void rnn_step_forward<double>(const RnnStepForward<double>&, Stream);
template void rnn_step_backward<float>(const RnnStepBackward<float>&, Stream);
template void rnn_step_backward<double>(const RnnStepBackward<double>&, Stream);
template void rnn_scale_rows<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, Stream);
template void rnn_scale_rows<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, Stream);
template void rnn_combine<float>(float*, const float*, const float*, const float*, int64_t, int64_t, Stream);
template void rnn_combine<double>(double*, const double*, const double*, const double*, int64_t, int64_t, Stream);

FDNN_RNN_INSTANTIATE(float)
FDNN_RNN_INSTANTIATE(double)

}  // namespace fdnn
