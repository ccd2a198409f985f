// The fusednn._C module: exception translation, threads, build information, and the families.
#include <pybind11/stl.h>

#include "bind/bind.h"
#include "common/avx512_paths.h"
#include "bind/errors.h"
#include "common/blas.h"
#include "common/check.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/gemm.h"
#include "cpu/output_pool.h"

namespace py = pybind11;

#ifndef FUSEDNN_COMPILER
#define FUSEDNN_COMPILER "unknown"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusednn CPU kernels";
  fdnn::blas_use_one_thread();

  fdnn::bind::register_errors();

  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw fdnn::ValueError("n: expected a thread count >= 1, got " + std::to_string(n));
        fdnn::set_num_threads(n);
      },
      py::arg("n"), "Threads used by fusednn's kernels, GEMMs included.");
  m.def("get_num_threads", &fdnn::num_threads, "Threads used by fusednn's kernels, GEMMs included.");

  m.def("_build_info", []() {
    py::dict d;
    d["compiler"] = FUSEDNN_COMPILER;
    d["isa_paths_compiled"] = fdnn::isa_paths_compiled();
    d["isa_path_selected"] = fdnn::isa_path_selected();
    d["avx512_paths"] = fdnn::avx512_paths_enabled();
    d["avx2_paths"] = fdnn::avx2_paths_enabled();
    d["threads"] = "fusednn thread pool (spins up to 50 us after a loop, then sleeps; fork-safe)";
    d["blas"] = std::string("scipy-openblas32: ") + fdnn::blas_config();
    d["blas_core"] = fdnn::blas_core();
    d["gemm_kernel"] = fdnn::gemm_kernel();
    return d;
  });
  m.def(
      "set_output_pool_limit",
      [](long long nbytes) {
        if (nbytes < 0)
          throw fdnn::ValueError("nbytes: expected a byte count >= 0, got " + std::to_string(nbytes));
        fdnn::set_output_pool_limit(static_cast<size_t>(nbytes));
      },
      py::arg("nbytes"),
      "At most this many bytes of freed large outputs kept for reuse (0: none kept). See output_pool_info.");
  m.def(
      "output_pool_info",
      []() {
        const fdnn::OutputPoolStats st = fdnn::output_pool_stats();
        py::dict d;
        d["limit_bytes"] = st.limit_bytes;
        d["idle_bytes"] = st.idle_bytes;
        d["idle_blocks"] = st.idle_blocks;
        d["hits"] = st.hits;
        d["misses"] = st.misses;
        d["min_pooled_bytes"] = fdnn::kMinPooledBytes;
        d["data_offset"] = fdnn::kPooledDataOffset;
        return d;
      },
      "The pool of large output blocks: its limit, the idle bytes and blocks it holds, and how many "
      "allocations it served from idle blocks (hits) and from new mappings (misses); min_pooled_bytes "
        "(smaller outputs come from NumPy's allocator) and data_offset (where a pooled array starts past "
        "a 2 MiB boundary: where NumPy's own large arrays start modulo a page).");
  m.def("_gemm_kernel", &fdnn::gemm_kernel,
        "The GEMM kernel setting: 'auto' (by the product's size), the CPU's own kernel ('fusednn-avx512' or "
        "'fusednn-avx2') or 'openblas'.");
  m.def("_gemm_kernel_for", &fdnn::gemm_kernel_for, py::arg("m"), py::arg("n"), py::arg("k"),
        "The GEMM kernel an m x n x k product runs with the current setting.");
  m.def("_gemm_kernel_available", &fdnn::gemm_kernel_available, py::arg("kernel"),
        "Whether this CPU can run the GEMM kernel setting 'auto', 'fusednn-avx512', 'fusednn-avx2' or "
        "'openblas' (at most one of the own kernels: AVX-512F's, or else AVX2 + FMA's).");
  m.def("_set_gemm_kernel", &fdnn::set_gemm_kernel, py::arg("kernel"),
        "Switch the GEMM kernel (for tests and benchmarks): 'openblas', or the CPU's own kernel "
        "('fusednn-avx512' or 'fusednn-avx2') or 'auto' where it has one.");

  fdnn::bind::bind_all(m);
}
