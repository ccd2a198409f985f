// Versions of the CUDA runtime and cuBLASLt the CUDA module runs with (for build_info).
#pragma once

#include <string>

namespace fdnn {
std::string cuda_runtime_version();
std::string cublaslt_version();
}  // namespace fdnn
