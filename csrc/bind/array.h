// NumPy array -> TensorView, with the checks every binding needs. Inputs may be any strided
// array (a contiguous copy is made and kept alive for the call); outputs must be exactly
// right, because the caller expects them to be written in place.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "common/activation.h"
#include "common/check.h"
#include "common/stream.h"
#include "common/tensor.h"

namespace fdnn::bind {

namespace py = pybind11;

std::string type_name(py::handle obj);
std::string dtype_str(const py::dtype& dt);

// Keeps the contiguous copies of inputs alive for the duration of a call.
using KeepAlive = std::vector<py::object>;

// A float32/float64 NumPy array, made C-contiguous and aligned if it is not.
TensorView input_array(py::handle obj, const char* name, KeepAlive& keep);
inline std::optional<TensorView> optional_input_array(py::handle obj, const char* name, KeepAlive& keep) {
  if (obj.is_none()) return std::nullopt;
  return input_array(obj, name, keep);
}
// The data of an optional array, or null.
template <typename T> T* ptr_or_null(const std::optional<TensorView>& t) { return t ? t->ptr<T>() : nullptr; }

// An array the kernel writes into: must be a NumPy array of exactly this dtype and shape,
// C-contiguous, aligned and writable.
TensorView output_array(py::handle obj, const char* name, DType dtype, const std::vector<int64_t>& shape);

// The stream the call's kernels run on, built once in every binding's prologue (GIL held): CuPy's
// current stream in the CUDA module, the default handle in the CPU module (whose kernels ignore it).
Stream call_stream();

// Whether obj is an array of this module's kind (numpy.ndarray; cupy.ndarray in the CUDA module).
bool is_array(py::handle obj);

// The shape of an array of this module's kind.
std::vector<int64_t> array_shape(py::handle obj);

// The array's values as a NumPy array on the host (the array itself for NumPy; a copy for
// CuPy), for checks that read values (class labels).
py::object host_values(py::handle obj);

// A 1-D integer array (of this module's kind) as a C-contiguous int64 array on the host, kept in
// `keep`: TypeError unless it is an integer array, ValueError unless its length is `length`
// (any length when -1) and every value fits in int64. `what` names the values for messages.
// Always a private copy, never the caller's array: the values the binding checks are the values
// its kernels read after the GIL is released, whatever another thread writes meanwhile.
py::array_t<int64_t> host_indices(py::handle obj, const char* name, int64_t length, const char* what,
                                  KeepAlive& keep);

// A pointer, valid during the call, to the values of a C-contiguous host int64 array where the
// kernels read them (the host array itself, or a device copy kept in `keep`).
const int64_t* kernel_int64(const py::array_t<int64_t>& host, KeepAlive& keep);

// A boolean array of exactly `shape`, as bytes 0/1 (a C-contiguous copy kept in `keep` when the
// array is not contiguous).
const uint8_t* bool_array(py::handle obj, const char* name, const std::vector<int64_t>& shape, KeepAlive& keep);

// A new uninitialized C-contiguous array; `obj` receives the owning Python object.
TensorView new_array(py::object& obj, DType dtype, const std::vector<int64_t>& shape);

// `out` if given (checked as above), else a new array.
inline TensorView output_or_new(py::object& obj, const char* name, DType dtype, const std::vector<int64_t>& shape) {
  if (obj.is_none()) return new_array(obj, dtype, shape);
  return output_array(obj, name, dtype, shape);
}

// The `out` argument of an op with several outputs: None (every output allocated) or a tuple of
// `n` entries, each an array to write into or None (that output allocated). `names` spells the
// tuple for the message, e.g. "(dx, dw, db)". TypeError for anything else.
inline std::vector<py::object> out_tuple(py::handle out, size_t n, const char* names) {
  std::vector<py::object> outs(n, py::none());
  if (out.is_none()) return outs;
  if (!py::isinstance<py::tuple>(out) || py::len(out) != n) {
    const std::string length = py::isinstance<py::tuple>(out) ? " of length " + std::to_string(py::len(out)) : "";
    throw TypeError(std::string("out: expected a tuple ") + names + " of arrays (or None entries), or None, got " +
                    type_name(out) + length);
  }
  for (size_t i = 0; i < n; ++i) outs[i] = py::reinterpret_borrow<py::tuple>(out)[i];
  return outs;
}

// A view and its name for the overlap checks; a null view is skipped.
using NamedView = std::pair<const TensorView*, const char*>;

// ValueError when an output overlaps an input or another output: the kernels read their inputs
// while they write, and write each output once.
inline void check_outputs_disjoint(std::initializer_list<NamedView> outputs, std::initializer_list<NamedView> inputs) {
  for (auto o = outputs.begin(); o != outputs.end(); ++o) {
    if (!o->first) continue;
    for (const auto& [in, in_name] : inputs)
      if (in) check_no_overlap(*o->first, o->second, *in, in_name);
    for (auto o2 = std::next(o); o2 != outputs.end(); ++o2)
      if (o2->first) check_no_overlap(*o->first, o->second, *o2->first, o2->second);
  }
}

}  // namespace fdnn::bind

namespace fdnn::bind {

// Scalar arguments, checked with messages that name them.
// A real number (Python or NumPy, not bool); `expected` describes the valid values for the
// message, e.g. "a drop probability in [0, 1)" (the caller checks the range).
double float_arg(py::handle obj, const char* name, const char* expected = "a real number");
uint64_t uint64_arg(py::handle obj, const char* name);  // an integer in [0, 2**64)
int64_t int64_arg(py::handle obj, const char* name);    // an integer that fits in int64
std::string choice_arg(py::handle obj, const char* name, std::initializer_list<const char*> choices);
// None or "relu" (the activations kernels fuse), as the "activation" argument.
Activation activation_arg(py::handle obj);

// A NumPy scalar of the dtype, e.g. numpy.float32(v).
py::object numpy_scalar(double v, DType dtype);

// Calls f(float{}) or f(double{}) for the dtype; f reads the type with decltype.
template <typename F> void dispatch(DType dtype, F&& f) {
  if (dtype == DType::float32)
    f(float{});
  else
    f(double{});
}

// ValueError "name: expected shape (..), got (..)" unless the shapes are equal.
void check_shape(const std::vector<int64_t>& got, const char* name, const std::vector<int64_t>& expected);
void check_shape(const TensorView& got, const char* name, const std::vector<int64_t>& expected);  // no allocation

// Python's shape tuple of a view, as a vector.
std::vector<int64_t> shape_of(const TensorView& t);

// True when the two views are the same shape.
bool same_shape(const TensorView& a, const TensorView& b);
void check_same_shape(const TensorView& t, const char* name, const TensorView& ref, const char* ref_name);

}  // namespace fdnn::bind
