// CPU linear forward and backward over gemm (cpu/gemm.h), whose epilogue adds the bias and
// applies the ReLU; the ReLU mask and the bias-gradient reduction of backward are one pass.
#include <algorithm>

#include "common/isa.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "cpu/gemm.h"
#include "ops/linear.h"

namespace fdnn {
namespace {

// Per-thread scratch slots (common/scratch.h) of the caller's thread: dz and db's partials are
// kept between calls, so a call does not pay the page faults of fresh buffers.
constexpr int kDzSlot = 30, kPartialsSlot = 31;

// Rows per block for the row-parallel passes: about 64K elements, independent of threads.
int64_t rows_per_block(int64_t cols) { return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, cols)); }

// ---- vectorized leaf loops (one clone per ISA) ----

// dz = relu'(y) * dy for a block of rows; acc (cols) += the block's column sums when acc != null.
template <typename T>
FDNN_MULTIVERSION void relu_grad_rows(T* FDNN_RESTRICT dz, T* FDNN_RESTRICT acc, const T* FDNN_RESTRICT dy,
                                      const T* FDNN_RESTRICT y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r, dz += cols, dy += cols, y += cols) {
    if (acc) {
      for (int64_t j = 0; j < cols; ++j) {
        const T g = relu_grad_from_output(dy[j], y[j]);
        dz[j] = g;
        acc[j] += g;
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) dz[j] = relu_grad_from_output(dy[j], y[j]);
    }
  }
}

// acc (cols) += column sums of a block of rows of a.
template <typename T>
FDNN_MULTIVERSION void column_sums_rows(T* FDNN_RESTRICT acc, const T* FDNN_RESTRICT a, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r, a += cols)
    for (int64_t j = 0; j < cols; ++j) acc[j] += a[j];
}

// ---- passes ----

// db = column sums of dz (n x cols), and optionally dz = relu'(y) * dy written on the way
// (dz == dy when there is no activation). Deterministic: one partial per fixed row block,
// combined in block order.
template <typename T>
void backward_rows_pass(T* dz, T* db, const T* dy, const T* y, int64_t n, int64_t cols, bool relu_mask) {
  const int64_t block = rows_per_block(cols);
  const int64_t n_blocks = ceil_div(n, block);
  T* partials = db ? thread_scratch<T, kPartialsSlot>(n_blocks * cols) : nullptr;
  parallel_for(n, block, cols, [&](int64_t r0, int64_t r1) {
    T* acc = nullptr;
    if (db) {
      acc = partials + (r0 / block) * cols;
      std::fill(acc, acc + cols, T(0));
    }
    const int64_t off = r0 * cols;
    if (relu_mask)
      relu_grad_rows(dz + off, acc, dy + off, y + off, r1 - r0, cols);
    else
      column_sums_rows(acc, dy + off, r1 - r0, cols);
  });
  if (!db) return;
  // Sum the partials in block order, columns in parallel.
  const int64_t col_block = 1024;
  parallel_for(cols, col_block, n_blocks, [&](int64_t c0, int64_t c1) {
    std::fill(db + c0, db + c1, T(0));
    for (int64_t b = 0; b < n_blocks; ++b) column_sums_rows(db + c0, partials + b * cols + c0, 1, c1 - c0);
  });
}

}  // namespace

template <typename T>
void linear(T* y, const T* x, const T* w, const T* b, int64_t n, int64_t in, int64_t out, Activation act, Stream) {
  gemm<T>(false, true, n, out, in, x, w, y, b, act == Activation::relu);  // x @ w.T
}

template <typename T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, int64_t n, int64_t in,
                     int64_t out, Activation act, Stream) {
  // dz: the gradient at the pre-activation. One pass writes it and reduces db.
  const T* dz = dy;
  if (act == Activation::relu && n > 0 && out > 0) {
    T* dz_buffer = thread_scratch<T, kDzSlot>(n * out);
    backward_rows_pass(dz_buffer, db, dy, y, n, out, /*relu_mask=*/true);
    dz = dz_buffer;
  } else if (db && n > 0) {
    backward_rows_pass<T>(nullptr, db, dy, nullptr, n, out, /*relu_mask=*/false);
  } else if (db) {
    std::fill(db, db + out, T(0));
  }
  if (dx) gemm<T>(false, false, n, in, out, dz, w, dx, nullptr, false);  // (n x out) @ (out x in)
  if (dw) gemm<T>(true, false, out, in, n, dz, x, dw, nullptr, false);   // (out x n) @ (n x in)
}

FDNN_LINEAR_INSTANTIATE(float)
FDNN_LINEAR_INSTANTIATE(double)

}  // namespace fdnn
