// CPU linear forward and backward: the GEMMs come from BLAS; the bias, the ReLU and the
// bias-gradient reduction are fused around them in as few passes as possible.
#include <algorithm>

#include "common/blas.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "ops/linear.h"

namespace fdnn {
namespace {

// Rows per block for the row-parallel passes: about 64K elements, independent of threads.
int64_t rows_per_block(int64_t cols) { return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, cols)); }

// ---- vectorized leaf loops (one clone per ISA) ----

// Each of `rows` rows (ld apart) = b, or 0 when b is null.
template <typename T>
FDNN_MULTIVERSION void broadcast_rows(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT b, int64_t rows, int64_t cols,
                                      int64_t ld) {
  for (int64_t r = 0; r < rows; ++r, y += ld) {
    if (b)
      std::copy(b, b + cols, y);
    else
      std::fill(y, y + cols, T(0));
  }
}

template <typename T> FDNN_MULTIVERSION void relu_rows(T* FDNN_RESTRICT y, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r, y += ld)
    for (int64_t j = 0; j < cols; ++j) y[j] = relu(y[j]);
}

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
  Buffer<T> partials = db ? scratch<T>(n_blocks * cols) : Buffer<T>();
  parallel_for(n, block, cols, [&](int64_t r0, int64_t r1) {
    T* acc = nullptr;
    if (db) {
      acc = partials.get() + (r0 / block) * cols;
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
    for (int64_t b = 0; b < n_blocks; ++b) column_sums_rows(db + c0, partials.get() + b * cols + c0, 1, c1 - c0);
  });
}

}  // namespace

template <typename T>
void linear(T* y, const T* x, const T* w, const T* b, int64_t n, int64_t in, int64_t out, Activation act) {
  // Per tile of y: the bias goes in as GEMM's C with beta = 1 (replacing the pass in which BLAS
  // would zero C), then the ReLU runs on the tile while it is still in cache.
  auto bias_tile = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (b)
      broadcast_rows(y + r0 * out + c0, b + c0, r1 - r0, c1 - c0, out);
    else if (in == 0)
      broadcast_rows<T>(y + r0 * out + c0, nullptr, r1 - r0, c1 - c0, out);
  };
  auto relu_tile = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (act == Activation::relu) relu_rows(y + r0 * out + c0, r1 - r0, c1 - c0, out);
  };
  parallel_gemm<T>(false, true, n, out, in, T(1), x, w, b ? T(1) : T(0), y, bias_tile, relu_tile);
}

template <typename T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, int64_t n, int64_t in,
                     int64_t out, Activation act) {
  // dz: the gradient at the pre-activation. One pass writes it and reduces db.
  Buffer<T> dz_buffer;
  const T* dz = dy;
  if (act == Activation::relu && n > 0 && out > 0) {
    dz_buffer = scratch<T>(n * out);
    backward_rows_pass(dz_buffer.get(), db, dy, y, n, out, /*relu_mask=*/true);
    dz = dz_buffer.get();
  } else if (db && n > 0) {
    backward_rows_pass<T>(nullptr, db, dy, nullptr, n, out, /*relu_mask=*/false);
  } else if (db) {
    std::fill(db, db + out, T(0));
  }
  if (dx) {
    if (out > 0)
      parallel_gemm<T>(false, false, n, in, out, T(1), dz, w, T(0), dx);  // (n x out) @ (out x in)
    else
      std::fill(dx, dx + n * in, T(0));
  }
  if (dw) {
    if (n > 0)
      parallel_gemm<T>(true, false, out, in, n, T(1), dz, x, T(0), dw);  // (out x n) @ (n x in)
    else
      std::fill(dw, dw + out * in, T(0));
  }
}

FDNN_LINEAR_INSTANTIATE(float)
FDNN_LINEAR_INSTANTIATE(double)

}  // namespace fdnn
