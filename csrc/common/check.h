// Argument checks. Every violation throws fdnn::TypeError or fdnn::ValueError with a message
// that names the argument, what was expected and what was given; the bindings translate
// them into Python's TypeError and ValueError. Plain C++ so the CUDA module reuses them.
#pragma once

#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/tensor.h"

namespace fdnn {

struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ValueError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void check_ndim(const TensorView& t, const char* name, int ndim) {
  if (t.ndim != ndim)
    throw ValueError(std::string(name) + ": expected a " + std::to_string(ndim) + "-D array, got " +
                     std::to_string(t.ndim) + "-D with shape " + t.shape_str());
}

inline void check_dim(const TensorView& t, const char* name, int axis, int64_t expected, const std::string& why) {
  if (t.shape[axis] != expected)
    throw ValueError(std::string(name) + ": expected shape[" + std::to_string(axis) + "] == " +
                     std::to_string(expected) + " (" + why + "), got shape " + t.shape_str());
}

inline void check_same_dtype(const TensorView& t, const char* name, DType expected, const char* ref_name) {
  if (t.dtype != expected)
    throw TypeError(std::string(name) + ": expected dtype " + dtype_name(expected) + " (the dtype of " + ref_name +
                    "), got " + dtype_name(t.dtype));
}

// Sizes handed to a 32-bit-integer BLAS.
inline void check_blas_int(int64_t v, const char* what) {
  if (v > INT_MAX)
    throw ValueError(std::string(what) + " = " + std::to_string(v) + " exceeds the BLAS limit of " +
                     std::to_string(INT_MAX));
}

// An output must not share memory with an input: a kernel reads its inputs while it writes.
inline void check_no_overlap(const TensorView& out, const char* out_name, const TensorView& in, const char* in_name) {
  if (out.data == nullptr || in.data == nullptr || out.numel() == 0 || in.numel() == 0) return;
  auto lo_hi = [](const TensorView& t, const char*& lo, const char*& hi) {
    int64_t first = 0, last = 0;
    for (int i = 0; i < t.ndim; ++i) {
      int64_t span = (t.shape[i] - 1) * t.strides[i] * t.itemsize();
      (span < 0 ? first : last) += span;
    }
    lo = static_cast<const char*>(t.data) + first;
    hi = static_cast<const char*>(t.data) + last + t.itemsize();
  };
  const char *a0, *a1, *b0, *b1;
  lo_hi(out, a0, a1);
  lo_hi(in, b0, b1);
  if (a0 < b1 && b0 < a1)
    throw ValueError(std::string(out_name) + ": must not share memory with " + in_name +
                     " (the kernel reads " + in_name + " while it writes " + out_name + ")");
}

}  // namespace fdnn
