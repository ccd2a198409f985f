// A non-owning view of an array: pointer, dtype, shape and strides (in elements).
// The bindings build views from NumPy (or CuPy) arrays after checking them; kernels take
// typed pointers and sizes from the views.
#pragma once

#include <cstdint>
#include <string>

namespace fdnn {

enum class DType { float32, float64 };

inline const char* dtype_name(DType d) { return d == DType::float32 ? "float32" : "float64"; }

constexpr int kMaxDims = 8;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::float32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t itemsize() const { return dtype == DType::float32 ? 4 : 8; }
  std::string shape_str() const {
    std::string s = "(";
    for (int i = 0; i < ndim; ++i) {
      s += std::to_string(shape[i]);
      if (ndim == 1 || i + 1 < ndim) s += i + 1 < ndim ? ", " : ",";
    }
    return s + ")";
  }
  template <typename T> T* ptr() const { return static_cast<T*>(data); }
};

}  // namespace fdnn
