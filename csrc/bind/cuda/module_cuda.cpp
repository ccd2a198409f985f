// The fusednn._C_cuda module: the same bindings as fusednn._C (compiled with
// FDNN_CUDA_BINDINGS, so they read CuPy arrays) over the CUDA kernels.
#include <pybind11/pybind11.h>

#include "bind/bind.h"
#include "bind/errors.h"
#include "common/cuda_info.h"

namespace py = pybind11;

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "fusednn CUDA kernels (CuPy arrays)";
  fdnn::bind::register_errors();
  m.def("_build_info", []() {
    py::dict d;
    d["cuda_runtime"] = fdnn::cuda_runtime_version();
    d["cublaslt"] = fdnn::cublaslt_version();
    d["architectures"] = FDNN_CUDA_ARCHITECTURES;
    return d;
  });
  fdnn::bind::bind_all(m);
}
