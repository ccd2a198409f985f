#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "common/cuda_info.h"

namespace fdnn {

std::string cuda_runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

std::string cublaslt_version() { return std::to_string(cublasLtGetVersion()); }

}  // namespace fdnn
