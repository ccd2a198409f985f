// gemm (cpu/gemm.h): the kernel choice, and the OpenBLAS kernel.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>

#include "common/activation.h"
#include "common/blas.h"
#include "common/check.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/gemm.h"

namespace fdnn {
namespace {

const char kBlasKernel[] = "openblas";
const char kAutoKernel[] = "auto";

// The own kernel this CPU runs: AVX-512F's, AVX2's or none (common/avx512_paths.h decides).
enum class OwnKernel { avx512, avx2, none };

OwnKernel own_kernel() {
  static const OwnKernel own = gemm_avx512_supported() ? OwnKernel::avx512
                               : gemm_avx2_supported() ? OwnKernel::avx2
                                                       : OwnKernel::none;
  return own;
}

const char* own_kernel_name() {
  return own_kernel() == OwnKernel::avx512 ? "fusednn-avx512" : own_kernel() == OwnKernel::avx2 ? "fusednn-avx2" : "";
}

enum class Kernel { own, blas, by_size };

// The kernel choice: by size where the CPU has an own kernel (gemm.h's rule), OpenBLAS
// elsewhere; the tests and benchmarks switch it.
std::atomic<Kernel>& kernel_choice() {
  static std::atomic<Kernel> choice{own_kernel() != OwnKernel::none ? Kernel::by_size : Kernel::blas};
  return choice;
}

bool own_kernel_for(int64_t m, int64_t n, int64_t k) {
  switch (kernel_choice().load(std::memory_order_relaxed)) {
    case Kernel::own:
      return true;
    case Kernel::blas:
      return false;
    case Kernel::by_size:
      break;
  }
  const double macs = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  return macs < (own_kernel() == OwnKernel::avx512 ? kOwnKernelMaxMacs : kOwnAvx2KernelMaxMacs);
}

// ---- the OpenBLAS kernel: single-threaded BLAS calls on a fixed tiling of C (blas.h), with
// the bias written as GEMM's C (beta = 1) and the ReLU run on each tile while it is in cache.

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

template <typename T>
FDNN_MULTIVERSION void relu_rows(T* FDNN_RESTRICT y, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r, y += ld)
    for (int64_t j = 0; j < cols; ++j) y[j] = fdnn::relu(y[j]);
}

template <typename T>
void gemm_blas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c,
               const T* bias, bool relu) {
  auto before = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (bias) broadcast_rows(c + r0 * n + c0, bias + c0, r1 - r0, c1 - c0, n);
  };
  auto after = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (relu) relu_rows(c + r0 * n + c0, r1 - r0, c1 - c0, n);
  };
  parallel_gemm<T>(trans_a, trans_b, m, n, k, T(1), a, b, bias ? T(1) : T(0), c, before, after);
}

}  // namespace

template <typename T>
void gemm_with_packed_b(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                        const T* packed, T* c, const T* bias, bool relu) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // C = act(bias), or 0
    broadcast_rows<T>(c, bias, m, n, n);
    if (relu) relu_rows(c, m, n, n);
    return;
  }
  if (!own_kernel_for(m, n, k))
    gemm_blas<T>(trans_a, trans_b, m, n, k, a, b, c, bias, relu);
  else if (own_kernel() == OwnKernel::avx512)
    gemm_avx512<T>(trans_a, trans_b, m, n, k, a, b, packed, c, bias, relu);
  else
    gemm_avx2<T>(trans_a, trans_b, m, n, k, a, b, packed, c, bias, relu);
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c, const T* bias,
          bool relu) {
  gemm_with_packed_b<T>(trans_a, trans_b, m, n, k, a, b, nullptr, c, bias, relu);
}

template <typename T> int64_t gemm_packed_b_size(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) return 0;
  switch (own_kernel()) {
    case OwnKernel::avx512:
      return gemm_avx512_packed_b_size<T>(n, k);
    case OwnKernel::avx2:
      return gemm_avx2_packed_b_size<T>(n, k);
    case OwnKernel::none:
      break;
  }
  return 0;
}

template <typename T> void gemm_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed) {
  if (reinterpret_cast<uintptr_t>(packed) % 64 != 0)
    throw std::invalid_argument("gemm_pack_b: packed must be 64-byte aligned");
  if (gemm_packed_b_size<T>(n, k) == 0) return;
  if (own_kernel() == OwnKernel::avx512)
    gemm_avx512_pack_b<T>(trans_b, n, k, b, packed);
  else
    gemm_avx2_pack_b<T>(trans_b, n, k, b, packed);
}

bool gemm_reads_packed_b(int64_t m, int64_t n, int64_t k) {
  return m > 0 && n > 0 && k > 0 && own_kernel() != OwnKernel::none && own_kernel_for(m, n, k);
}

bool gemm_kernel_available(const std::string& name) {
  return name == kBlasKernel ||
         (own_kernel() != OwnKernel::none && (name == own_kernel_name() || name == kAutoKernel));
}

std::string gemm_kernel() {
  switch (kernel_choice().load()) {
    case Kernel::own:
      return own_kernel_name();
    case Kernel::blas:
      return kBlasKernel;
    case Kernel::by_size:
      break;
  }
  return kAutoKernel;
}

std::string gemm_kernel_for(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0) return "none";
  return own_kernel_for(m, n, k) ? own_kernel_name() : kBlasKernel;
}

void set_gemm_kernel(const std::string& name) {
  if (!gemm_kernel_available(name))
    throw ValueError(std::string("kernel: expected '") + kBlasKernel + "'" +
                     (own_kernel() != OwnKernel::none
                          ? std::string(", '") + own_kernel_name() + "' or '" + kAutoKernel + "'"
                          : std::string()) +
                     " (the GEMM kernels this CPU can run), got '" + name + "'");
  kernel_choice().store(name == kBlasKernel ? Kernel::blas : name == kAutoKernel ? Kernel::by_size : Kernel::own);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, const float*, float*, const float*,
                          bool);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, const double*, double*,
                           const double*, bool);
template void gemm_with_packed_b<float>(bool, bool, int64_t, int64_t, int64_t, const float*, const float*,
                                        const float*, float*, const float*, bool);
template void gemm_with_packed_b<double>(bool, bool, int64_t, int64_t, int64_t, const double*, const double*,
                                         const double*, double*, const double*, bool);
template int64_t gemm_packed_b_size<float>(int64_t, int64_t);
template int64_t gemm_packed_b_size<double>(int64_t, int64_t);
template void gemm_pack_b<float>(bool, int64_t, int64_t, const float*, float*);
template void gemm_pack_b<double>(bool, int64_t, int64_t, const double*, double*);

}  // namespace fdnn
