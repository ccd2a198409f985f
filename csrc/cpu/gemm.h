// Row-major GEMM with a fused epilogue, the CPU building block of linear:
//
//   C (m x n) = act(op(A) op(B) + bias)
//
// op(A) is m x k (A is stored k x m when trans_a), op(B) is k x n (B is stored n x k when
// trans_b); all operands are contiguous row-major; bias has n entries or is null; act is the
// identity or ReLU (NaN stays NaN). k = 0 gives C = act(bias), or 0.
//
// Two kinds of kernel: fusednn's own (gemm_kernel.inc, compiled for AVX-512F in
// gemm_avx512_cpu.cpp and for AVX2 + FMA in gemm_avx2_cpu.cpp; a CPU runs at most one of them,
// as common/avx512_paths.h decides) and OpenBLAS over a fixed tiling of C (gemm_cpu.cpp). Where
// the CPU runs an own kernel, the product's size picks one ("auto"): the own kernel below a
// number of multiply-adds (m n k), kOwnKernelMaxMacs for AVX-512's and kOwnAvx2KernelMaxMacs
// for AVX2's, OpenBLAS at and above it; elsewhere OpenBLAS.
// - AVX-512 (Zen 4): the own kernel was 2-14% faster than OpenBLAS on the training shapes (batch
//   128-1024, widths 256-1024), OpenBLAS 4-9% faster at 4096 x 1024 x 1024, 2048^3 and the TN
//   product with k = 4096 of a large batch's weight gradient.
// - AVX2 (Zen 3, against OpenBLAS's Haswell kernel, 2 threads, fwd+bwd): the own kernel 4-20%
//   faster on the training shapes (2^23-2^26), 4% faster at 256 x 1024 x 1024 (2^28), a tie at
//   2^29, 0.5-5% slower at 2^30 (1024^3, 512 x 2048 x 1024; medians of 25 paired runs), 3-15%
//   slower at 2^32-2^33.
// The choice depends on the sizes only, so the result does not depend on the thread count
// either: every element is computed by the same instructions in the same order whichever thread
// computes it. Both own kernels compute each element the same way (gemm_kernel.inc): the same
// bits.
#pragma once

#include <cstdint>
#include <string>

namespace fdnn {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c, const T* bias,
          bool relu);

// Products that reuse one B with many A's (rnn's recurrent steps: the same weights at every
// step): gemm_packed_b_size elements (0 where the CPU runs no own kernel: nothing to pack), filled
// once by gemm_pack_b with op(B) (k x n) packed for the own kernel; `packed` must be 64-byte
// aligned (scratch() in common/scratch.h). gemm_with_packed_b gives gemm's result, bit for bit:
// where gemm_reads_packed_b (gemm's rule picks the own kernel) it reads the panels from `packed`
// instead of packing them from b again, elsewhere it runs gemm on b. packed may be null (then it
// is gemm).
template <typename T> int64_t gemm_packed_b_size(int64_t n, int64_t k);
template <typename T> void gemm_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed);
template <typename T>
void gemm_with_packed_b(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                        const T* packed, T* c, const T* bias, bool relu);

// Whether gemm_with_packed_b reads `packed` for an m x n x k product (gemm's rule picks the own
// kernel): where it does not, packing is wasted work.
bool gemm_reads_packed_b(int64_t m, int64_t n, int64_t k);

constexpr double kOwnKernelMaxMacs = 2147483648.0;      // 2^31 multiply-adds
constexpr double kOwnAvx2KernelMaxMacs = 1073741824.0;  // 2^30

// The kernel settings gemm can run: "auto" (the rule above) and the own kernel of the CPU
// ("fusednn-avx512" or "fusednn-avx2"), where it has one, and "openblas".
bool gemm_kernel_available(const std::string& name);
// The setting now ("auto" by default where the CPU has an own kernel, else "openblas"), the
// kernel it runs for an m x n x k product ("fusednn-avx512", "fusednn-avx2" or "openblas"; "none"
// for an empty one), and a switch for tests and benchmarks (throws ValueError for an unknown or
// unavailable name).
std::string gemm_kernel();
std::string gemm_kernel_for(int64_t m, int64_t n, int64_t k);
void set_gemm_kernel(const std::string& name);

// The AVX2 kernel (gemm_avx2_cpu.cpp): whether this CPU runs it (AVX2 and FMA, no AVX-512F:
// avx2_fma_paths_enabled()), the kernel with gemm's contract for k >= 1 (packed_b: op(B) packed
// by gemm_avx2_pack_b, or null), and its packing of op(B).
bool gemm_avx2_supported();
template <typename T>
void gemm_avx2(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
               const T* packed_b, T* c, const T* bias, bool relu);
template <typename T> int64_t gemm_avx2_packed_b_size(int64_t n, int64_t k);
template <typename T> void gemm_avx2_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed);

// The AVX-512 kernel (gemm_avx512_cpu.cpp): whether this CPU can run it, the kernel itself, with
// gemm's contract for k >= 1 (packed_b: op(B) packed by gemm_avx512_pack_b, or null), and its
// packing of op(B).
bool gemm_avx512_supported();
template <typename T>
void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                 const T* packed_b, T* c, const T* bias, bool relu);
template <typename T> int64_t gemm_avx512_packed_b_size(int64_t n, int64_t k);
template <typename T> void gemm_avx512_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed);
// The packed layout, for callers that write op(B) straight into it (conv's im2col): op(B)(kk, j)
// is at packed[gemm_avx512_packed_b_row<T>(n, k, kk, j / W) + j % W], W =
// gemm_avx512_panel_width<T>() (32 floats, 16 doubles); a panel's columns past n hold zeros.
template <typename T> constexpr int64_t gemm_avx512_panel_width() { return 128 / static_cast<int64_t>(sizeof(T)); }
template <typename T> int64_t gemm_avx512_packed_b_row(int64_t n, int64_t k, int64_t kk, int64_t panel);
// op(A) (m x k) packed once for many products with that A (conv's weights, per image):
// gemm_avx512_packed_a_size elements, 64-byte aligned, filled by gemm_avx512_pack_a; then
// gemm_avx512_with_packed_a is gemm_avx512 (same contract, same bits) reading A's tiles from
// packed_a (a is then not read; packed_a null: gemm_avx512). packed_a is only read, so threads
// may share it.
template <typename T> int64_t gemm_avx512_packed_a_size(int64_t m, int64_t k);
template <typename T> void gemm_avx512_pack_a(bool trans_a, int64_t m, int64_t k, const T* a, T* packed);
template <typename T>
void gemm_avx512_with_packed_a(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                               const T* packed_a, const T* packed_b, T* c, const T* bias, bool relu);
// sum (m x n, row-major, doubles) += op(A) op(B): each element computed as gemm_avx512 computes
// it (the same sums, rounded to T), then added in double, as sum[i] += double(c[i]) would;
// c (m x n) is scratch (it holds the partials when k spans several of the kernel's k-blocks).
template <typename T>
void gemm_avx512_add_to_double(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                               const T* packed_b, T* c, double* sum);

}  // namespace fdnn
