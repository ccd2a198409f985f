// CUDA linear forward and backward (the CPU twin: linear_cpu.cpp). The GEMMs are cuBLASLt
// matmuls with the bias and the bias gradient fused into their epilogues; small kernels do the
// ReLU (forward, so that NaN stays NaN) and its mask (backward), and the cases without a GEMM.
//
// Row-major -> column-major. cuBLASLt is column-major (D = op(A) op(B), D m x n, k the inner
// dimension), and a row-major (r, c) array is, in the same memory, the column-major (c x r)
// matrix, its transpose. So every product is written for the transposes (ld = rows, packed):
//
//   forward   y^T  (out x n)  = w (out x in) . x^T (in x n)
//             A = w's memory  = (in x out) = w^T, op T     m = out, n = n, k = in
//             B = x's memory  = (in x n)   = x^T, op N     D = y's memory (out x n)
//             bias: one value per row of D = per output feature, broadcast over the n samples.
//   dw        dw^T (in x out) = x^T (in x n) . dz (n x out)
//             A = x's memory  = x^T, op N                  m = in, n = out, k = n (the batch)
//             B = dz's memory = (out x n) = dz^T, op T     D = dw's memory (in x out)
//             db = column sums of dz = the sums of op(B) over k: CUBLASLT_EPILOGUE_BGRADB (one
//             value per column of D, i.e. per output feature). BGRADA would sum op(A) = x^T over
//             the batch instead (one value per input feature): not db.
//   dx        dx^T (in x n)   = w^T (in x out) . dz^T (out x n)
//             A = w's memory  = w^T, op N                  m = in, n = n, k = out
//             B = dz's memory = dz^T, op N                 D = dx's memory (in x n)
//
// Backward ReLU: the DRELU_BGRAD epilogue would need the ReLU bit-mask (aux output) of a
// RELU_AUX_BIAS forward; this API hands backward y, not such a mask, so a small kernel writes
// dz = (y > 0 ? dy : 0) first and the GEMM fuses only the bias gradient.
//
// Numerics: CUBLAS_COMPUTE_32F (never TF32) for float, CUBLAS_COMPUTE_64F for double.
// Determinism: a workspace that no other matmul uses at the same time (one per stream, see
// with_workspace), a fixed workspace limit (so the heuristic picks the same algorithm for the
// same problem and alignment) and split-K reductions restricted to
// CUBLASLT_REDUCTION_SCHEME_NONE | _INPLACE: no split, or splits accumulated in an order that
// counters enforce. Results are then bitwise repeatable on a given GPU and cuBLASLt version.
#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "common/cuda.h"
#include "ops/linear.h"

namespace fdnn {
namespace {

// ---- kernels ----

// y = act(y + b) when accumulate (after a GEMM without a fused epilogue), else y = act(b)
// (b null: 0), the CPU's result for in == 0. b is broadcast over the n rows of y (n x out).
template <typename T>
__global__ void bias_act_kernel(T* y, const T* b, int64_t n, int64_t out, bool apply_relu, bool accumulate) {
  const int64_t count = n * out;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const T bias = b ? b[i % out] : T(0);
    const T v = accumulate ? (b ? y[i] + bias : y[i]) : bias;
    y[i] = apply_relu ? relu(v) : v;
  }
}

// dz = relu'(y) * dy as a select: dy = inf or NaN where y <= 0 still gives 0.
template <typename T> __global__ void relu_mask_kernel(T* dz, const T* dy, const T* y, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    dz[i] = relu_grad_from_output(dy[i], y[i]);
}

// db[j] = sum over the n rows of dz[:, j] (dz n x out), for the cases the BGRADB epilogue does not
// cover (in == 0, dw not wanted, a bias gradient that is not 16-byte aligned, as inside a flat
// gradient buffer, or no algorithm with the epilogue). The rows are cut into fixed chunks of
// kSumChunkRows, so that a narrow layer (a 10-class head: one column block) still spreads over
// ceil(n / kSumChunkRows) blocks instead of summing every row in one. A tile is (32 columns, one
// chunk): its 8 thread rows each sum a fixed slice of the chunk's rows (r = ty mod 8), then one
// thread adds the 8 slices in order and writes the chunk's partial; a second kernel adds the
// chunks' partials of each column in chunk order. Every partition is fixed by (n, out), so the
// result is deterministic (and the same on every GPU).
constexpr int kSumCols = 32, kSumSlices = 8;
constexpr int64_t kSumChunkRows = 128;
template <typename T>
__global__ void column_sums_kernel(T* partials, const T* dz, int64_t n, int64_t out, int64_t col_blocks,
                                   int64_t chunks) {
  __shared__ T partial[kSumSlices][kSumCols];
  for (int64_t tile = blockIdx.x; tile < col_blocks * chunks; tile += gridDim.x) {
    const int64_t chunk = tile / col_blocks;
    const int64_t j = (tile % col_blocks) * kSumCols + threadIdx.x;
    const int64_t r1 = (chunk + 1) * kSumChunkRows < n ? (chunk + 1) * kSumChunkRows : n;
    T s = T(0);
    if (j < out)
      for (int64_t r = chunk * kSumChunkRows + threadIdx.y; r < r1; r += kSumSlices) s += dz[r * out + j];
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < out) {
      T total = partial[0][threadIdx.x];
      for (int k = 1; k < kSumSlices; ++k) total += partial[k][threadIdx.x];
      partials[chunk * out + j] = total;
    }
    __syncthreads();  // partial is reused by the block's next tile
  }
}

// db[j] = the chunks' partials of column j added in chunk order.
template <typename T> __global__ void merge_chunks_kernel(T* db, const T* partials, int64_t out, int64_t chunks) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < out; j += int64_t(gridDim.x) * blockDim.x) {
    T total = partials[j];
    for (int64_t c = 1; c < chunks; ++c) total += partials[c * out + j];
    db[j] = total;
  }
}

template <typename T>
void bias_act(T* y, const T* b, int64_t n, int64_t out, bool apply_relu, bool accumulate, Stream stream) {
  bias_act_kernel<T><<<grid_for(n * out), kThreads, 0, cuda_stream(stream)>>>(y, b, n, out, apply_relu, accumulate);
  check_launch("bias_act_kernel");
}

template <typename T> void column_sums(T* db, const T* dz, int64_t n, int64_t out, Stream stream) {
  const int64_t col_blocks = (out + kSumCols - 1) / kSumCols;
  const int64_t chunks = (n + kSumChunkRows - 1) / kSumChunkRows;
  // One chunk: its partial is the sum. Several: partials (chunks x out) from the pool, then the merge.
  const DeviceBuffer<T> partials(chunks > 1 ? chunks * out : 0, stream);
  T* first = chunks > 1 ? partials.get() : db;
  column_sums_kernel<T><<<grid_for(col_blocks * chunks, 1), dim3(kSumCols, kSumSlices), 0, cuda_stream(stream)>>>(
      first, dz, n, out, col_blocks, chunks);
  check_launch("column_sums_kernel");
  if (chunks == 1) return;
  merge_chunks_kernel<T><<<grid_for(out), kThreads, 0, cuda_stream(stream)>>>(db, partials.get(), out, chunks);
  check_launch("merge_chunks_kernel");
}

template <typename T> void zero(T* p, int64_t count, Stream stream) {
  if (p && count > 0) cuda_check(cudaMemsetAsync(p, 0, count * sizeof(T), cuda_stream(stream)), "cudaMemsetAsync");
}

// ---- cuBLASLt ----

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt error in ") + what + ": status " + std::to_string(int(s)) + " (" +
                             cublasLtGetStatusName(s) + ")");
}

// One handle per device, created on first use and kept for the life of the process (a handle
// is bound to the device current at its creation; destroying it at exit could race the driver's
// own teardown).
cublasLtHandle_t lt_handle() {
  static std::mutex mutex;
  static std::unordered_map<int, cublasLtHandle_t> handles;
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  cublasLtHandle_t& h = handles[device];
  if (!h) lt_check(cublasLtCreate(&h), "cublasLtCreate");
  return h;
}

// Descriptors owned for the duration of one matmul (freed on every path, exceptions included).
template <class P, cublasStatus_t (*Destroy)(P)>
using LtOwned = std::unique_ptr<std::remove_pointer_t<P>, std::integral_constant<decltype(Destroy), Destroy>>;
using MatmulDesc = LtOwned<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using Layout = LtOwned<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using Preference = LtOwned<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

template <typename T> struct LtType;
template <> struct LtType<float> {
  static constexpr cudaDataType_t data = CUDA_R_32F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // full FP32: no TF32
};
template <> struct LtType<double> {
  static constexpr cudaDataType_t data = CUDA_R_64F;
  static constexpr cublasComputeType_t compute = CUBLAS_COMPUTE_64F;
};

template <class V> void set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const V& v) {
  lt_check(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), "cublasLtMatmulDescSetAttribute");
}
template <class V> void set(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const V& v) {
  lt_check(cublasLtMatmulPreferenceSetAttribute(p, attr, &v, sizeof(v)), "cublasLtMatmulPreferenceSetAttribute");
}

// A packed column-major rows x cols matrix of T (ld = rows).
template <typename T> Layout layout(int64_t rows, int64_t cols) {
  cublasLtMatrixLayout_t l = nullptr;
  lt_check(cublasLtMatrixLayoutCreate(&l, LtType<T>::data, rows, cols, rows), "cublasLtMatrixLayoutCreate");
  return Layout(l);
}

// The largest power of two (at most 256, cuBLASLt's default assumption) dividing the address:
// arrays that are views into a larger allocation may be less aligned than an allocation.
uint32_t alignment(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a /= 2;
  return a;
}

constexpr uint64_t kMaxWorkspace = uint64_t{32} << 20;

// The correctness fallback when cuBLASLt offers no algorithm for a plain GEMM: one thread per
// element of D (m x n, column-major), the k-sum in T in index order. Slow, never expected.
template <typename T>
__global__ void plain_gemm_kernel(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
                                  const T* b, T* d) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < m * n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e % m, j = e / m;
    T acc = 0;
    for (int64_t l = 0; l < k; ++l)
      acc += (trans_a ? a[i * k + l] : a[l * m + i]) * (trans_b ? b[l * n + j] : b[j * k + l]);
    d[e] = acc;
  }
}

// The cuBLASLt workspace of a (device, stream): kept between calls and grown as needed, instead
// of a fresh allocation per matmul. It is allocated, used and (when it grows) freed on that one
// stream, so its uses are ordered by the stream. The lock is held from the look-up until the
// matmul is enqueued, so that a second host thread on the same stream cannot free a buffer
// between another thread's look-up and its enqueue. Streams that a handle does not identify
// (the per-thread default stream: one handle, a different stream in each thread) and streams
// beyond the first kMaxCachedWorkspaces get a workspace per call from the pool instead, which
// bounds what the cache holds when a program creates many streams.
constexpr size_t kMaxCachedWorkspaces = 16;

struct CachedWorkspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// Calls run(workspace) with at least `bytes` of workspace on the stream (null when bytes == 0).
template <class Run> void with_workspace(size_t bytes, Stream stream, Run&& run) {
  if (bytes == 0) {
    run(static_cast<void*>(nullptr));
    return;
  }
  static std::mutex mutex;
  static std::map<std::pair<int, uintptr_t>, CachedWorkspace> cache;
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  const cudaStream_t s = cuda_stream(stream);
  std::unique_lock<std::mutex> lock(mutex);
  auto it = cache.find({device, stream.handle});
  if (it == cache.end() && s != cudaStreamPerThread && cache.size() < kMaxCachedWorkspaces)
    it = cache.emplace(std::make_pair(device, stream.handle), CachedWorkspace{}).first;
  if (it == cache.end()) {
    lock.unlock();
    const DeviceBuffer<char> workspace(static_cast<int64_t>(bytes), stream);
    run(static_cast<void*>(workspace.get()));
    return;
  }
  CachedWorkspace& w = it->second;
  if (w.bytes < bytes) {
    if (w.ptr) cuda_check(cudaFreeAsync(w.ptr, s), "cudaFreeAsync");
    w = CachedWorkspace{};
    keep_pool_memory();
    cuda_check(cudaMallocAsync(&w.ptr, bytes, s), "cudaMallocAsync");
    w.bytes = bytes;
  }
  run(w.ptr);
}

// D (m x n) = op(A) op(B) with `epilogue`, all packed column-major (A stored k x m when
// trans_a, else m x k; B stored n x k when trans_b, else k x n); bias is the epilogue's vector
// (read by BIAS, written by BGRADB). Returns false when an epilogue cannot be used:
// cuBLASLt offers no algorithm for it (the documentation does not promise every epilogue for
// every type, e.g. FP64), or the bias vector is not 16-byte aligned (the alignment preferences
// cover A-D only, and a kernel assuming an aligned bias faults on a view at an odd offset, such
// as a bias inside a flat parameter buffer). The caller then runs the plain GEMM and finishes
// with its own kernel. "No algorithm" is the heuristic's CUBLAS_STATUS_NOT_SUPPORTED or zero
// results; a plain GEMM without one runs plain_gemm_kernel. Any other failure status of the
// heuristic (an invalid value, an allocation failure, ...) is a RuntimeError naming it, never a
// silent switch to the slow kernel.
template <typename T>
bool lt_matmul(cublasLtEpilogue_t epilogue, const void* bias, bool trans_a, bool trans_b, int64_t m, int64_t n,
               int64_t k, const T* a, const T* b, T* d, Stream stream) {
  if (bias && alignment(bias) < 16) return false;
  cublasLtMatmulDesc_t desc_raw = nullptr;
  lt_check(cublasLtMatmulDescCreate(&desc_raw, LtType<T>::compute, LtType<T>::data), "cublasLtMatmulDescCreate");
  const MatmulDesc desc(desc_raw);
  set(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N);
  set(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N);
  set(desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
  if (bias) set(desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);

  const Layout a_layout = trans_a ? layout<T>(k, m) : layout<T>(m, k);
  const Layout b_layout = trans_b ? layout<T>(n, k) : layout<T>(k, n);
  const Layout d_layout = layout<T>(m, n);  // also C's (beta = 0: C is not read)

  cublasLtMatmulPreference_t pref_raw = nullptr;
  lt_check(cublasLtMatmulPreferenceCreate(&pref_raw), "cublasLtMatmulPreferenceCreate");
  const Preference pref(pref_raw);
  set(pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kMaxWorkspace);
  set(pref.get(), CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
      uint32_t{CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_INPLACE});
  set(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(a));
  set(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(b));
  set(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(d));
  set(pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(d));

  const cublasLtHandle_t handle = lt_handle();
  cublasLtMatmulHeuristicResult_t heuristic = {};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(handle, desc.get(), a_layout.get(), b_layout.get(),
                                                          d_layout.get(), d_layout.get(), pref.get(), 1, &heuristic,
                                                          &found);
  if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED) lt_check(s, "cublasLtMatmulAlgoGetHeuristic");
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) {
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) return false;
    plain_gemm_kernel<T><<<grid_for(m * n), kThreads, 0, cuda_stream(stream)>>>(trans_a, trans_b, m, n, k, a, b, d);
    check_launch("plain_gemm_kernel");
    return true;
  }

  const T one = T(1), zero_scale = T(0);
  with_workspace(heuristic.workspaceSize, stream, [&](void* workspace) {
    lt_check(cublasLtMatmul(handle, desc.get(), &one, a, a_layout.get(), b, b_layout.get(), &zero_scale, d,
                            d_layout.get(), d, d_layout.get(), &heuristic.algo, workspace, heuristic.workspaceSize,
                            cuda_stream(stream)),
             "cublasLtMatmul");
  });
  return true;
}

}  // namespace

template <typename T>
void linear(T* y, const T* x, const T* w, const T* b, int64_t n, int64_t in, int64_t out, Activation act,
            Stream stream) {
  if (n == 0 || out == 0) return;
  const bool apply_relu = act == Activation::relu;
  if (in == 0) {  // an empty sum: y = act(b), or act(0) without a bias
    bias_act(y, b, n, out, apply_relu, /*accumulate=*/false, stream);
    return;
  }
  // y^T = w . x^T (see the top of the file), the bias in the GEMM's BIAS epilogue. The ReLU is a
  // separate pass: cuBLASLt documents its RELU epilogues as max(x, 0), which does not promise
  // that a NaN stays NaN, and linear's contract (linear.h, docs/ops.md) is relu(NaN) = NaN: a
  // model that diverges must show it, on either device.
  if (!lt_matmul<T>(b ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, b, /*trans_a=*/true, /*trans_b=*/false,
                    out, n, in, w, x, y, stream)) {
    lt_matmul<T>(CUBLASLT_EPILOGUE_DEFAULT, nullptr, true, false, out, n, in, w, x, y, stream);
    bias_act(y, b, n, out, apply_relu, /*accumulate=*/true, stream);
  } else if (apply_relu) {
    bias_act(y, static_cast<const T*>(nullptr), n, out, /*apply_relu=*/true, /*accumulate=*/true, stream);
  }
}

template <typename T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, int64_t n, int64_t in,
                     int64_t out, Activation act, Stream stream) {
  if (n == 0) {  // no rows: dw and db are empty sums, dx is empty
    zero(dw, out * in, stream);
    zero(db, out, stream);
    return;
  }
  if (out == 0) {  // dx = dz @ w sums over no output features; dw and db are empty
    zero(dx, n * in, stream);
    return;
  }
  // dz: the gradient at the pre-activation.
  const bool relu_mask = act == Activation::relu;
  const DeviceBuffer<T> dz_buffer(relu_mask ? n * out : 0, stream);
  const T* dz = dy;
  if (relu_mask) {
    relu_mask_kernel<T><<<grid_for(n * out), kThreads, 0, cuda_stream(stream)>>>(dz_buffer.get(), dy, y, n * out);
    check_launch("relu_mask_kernel");
    dz = dz_buffer.get();
  }
  // dw^T = x^T . dz, with db = column sums of dz from the BGRADB epilogue in the same GEMM.
  bool db_pending = db != nullptr;
  if (dw && in > 0) {
    if (db_pending && lt_matmul<T>(CUBLASLT_EPILOGUE_BGRADB, db, false, true, in, out, n, x, dz, dw, stream))
      db_pending = false;
    else
      lt_matmul<T>(CUBLASLT_EPILOGUE_DEFAULT, nullptr, false, true, in, out, n, x, dz, dw, stream);
  }
  if (db_pending) column_sums(db, dz, n, out, stream);  // in == 0, no dw, unaligned db, or no BGRADB algorithm
  // dx^T = w^T . dz^T.
  if (dx && in > 0) lt_matmul<T>(CUBLASLT_EPILOGUE_DEFAULT, nullptr, false, false, in, n, out, w, dz, dx, stream);
}

FDNN_LINEAR_INSTANTIATE(float)
FDNN_LINEAR_INSTANTIATE(double)

}  // namespace fdnn
