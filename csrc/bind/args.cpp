// Arguments that are not arrays (scalars, choices) and helpers on views: shared by the NumPy
// module (array.cpp) and the CuPy one (cuda/array_cuda.cpp).
#include "bind/array.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace fdnn::bind {

std::string type_name(py::handle obj) {
  py::handle type = reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()));
  return py::str(type.attr("__module__")).cast<std::string>() + "." +
         py::str(type.attr("__qualname__")).cast<std::string>();
}

// A dtype for messages: its name, and for a byte-swapped float (">f4" on a little-endian
// machine) what it is and how to convert it, since "expected float32, got >f4" does not say.
std::string dtype_str(const py::dtype& dt) {
  const std::string s = py::str(dt).cast<std::string>();
  if (dt.attr("isnative").cast<bool>()) return s;
  const std::string native = py::str(dt.attr("newbyteorder")("=")).cast<std::string>();
  return s + " (" + native + " in non-native byte order; convert with .astype(np." + native + "))";
}

// The rule of fusednn/_checks.py's real(): a Python int or float (not bool) or a NumPy real
// scalar (numpy.floating, numpy.integer); arrays of any shape (0-d too), complex numbers, None,
// strings and bools are a TypeError that names the argument.
double float_arg(py::handle obj, const char* name, const char* expected) {
  static const py::handle np_floating = py::object(py::module_::import("numpy").attr("floating")).release();
  static const py::handle np_integer = py::object(py::module_::import("numpy").attr("integer")).release();
  const bool real = !py::isinstance<py::bool_>(obj) &&
                    (py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj) ||
                     py::isinstance(obj, np_floating) || py::isinstance(obj, np_integer));
  if (!real)
    throw TypeError(std::string(name) + ": expected " + expected + ", got " + py::repr(obj).cast<std::string>() +
                    " (" + type_name(obj) + ")");
  const double v = PyFloat_AsDouble(obj.ptr());  // a Python int too large for a double raises OverflowError
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw ValueError(std::string(name) + ": expected " + expected + ", got " + py::repr(obj).cast<std::string>() +
                     " (too large for a float64)");
  }
  return v;
}

namespace {
// The rule of fusednn/_checks.py's integer(): a Python int (not bool) or a numpy.integer; arrays
// (0-d too) are a TypeError.
py::object as_python_int(py::handle obj, const char* name, const char* expected) {
  static const py::handle np_integer = py::object(py::module_::import("numpy").attr("integer")).release();
  if (py::isinstance<py::bool_>(obj) || !(py::isinstance<py::int_>(obj) || py::isinstance(obj, np_integer)))
    throw TypeError(std::string(name) + ": expected " + expected + ", got " + py::repr(obj).cast<std::string>() +
                    " (" + type_name(obj) + ")");
  return py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));  // cannot fail for these types
}
}  // namespace

uint64_t uint64_arg(py::handle obj, const char* name) {
  if (PyLong_CheckExact(obj.ptr())) {  // the common case, without Python temporaries
    const unsigned long long v = PyLong_AsUnsignedLongLong(obj.ptr());
    if (!(v == static_cast<unsigned long long>(-1) && PyErr_Occurred())) return v;
    PyErr_Clear();  // negative or too large: the message below
  }
  py::object v = as_python_int(obj, name, "an integer in [0, 2**64)");
  if (v < py::int_(0) || v >= py::int_(1).attr("__lshift__")(64))
    throw ValueError(std::string(name) + ": expected an integer in [0, 2**64), got " + py::repr(v).cast<std::string>());
  return v.cast<uint64_t>();
}

int64_t int64_arg(py::handle obj, const char* name) {
  if (PyLong_CheckExact(obj.ptr())) {  // the common case, without Python temporaries
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) return v;
    PyErr_Clear();  // out of range: the message below
  }
  py::object v = as_python_int(obj, name, "an integer");
  const py::int_ lim = py::int_(1).attr("__lshift__")(63);
  if (v < -lim || v >= lim)
    throw ValueError(std::string(name) + ": expected an integer in [-2**63, 2**63), got " +
                     py::repr(v).cast<std::string>());
  return v.cast<int64_t>();
}

std::string choice_arg(py::handle obj, const char* name, std::initializer_list<const char*> choices) {
  if (py::isinstance<py::str>(obj)) {
    const std::string s = obj.cast<std::string>();
    for (const char* c : choices)
      if (s == c) return s;
  }
  std::string list;
  size_t i = 0;
  for (const char* c : choices) {
    list += (i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ")) + std::string("'") + c + "'";
    ++i;
  }
  throw ValueError(std::string(name) + ": expected " + list + ", got " + py::repr(obj).cast<std::string>());
}

py::object numpy_scalar(double v, DType dtype) {
  // Through a kept 0-d array of the dtype: numpy.float32(v) allocates a 0-d array's data every
  // time; setting and reading a kept one does not (a scalar holds its value, not the array's
  // memory). Touched only with the GIL held; never freed.
  static py::object* scalars[2] = {nullptr, nullptr};
  const int i = dtype == DType::float32 ? 0 : 1;
  if (!scalars[i])
    scalars[i] = new py::object(py::module_::import("numpy").attr("zeros")(py::tuple(), dtype_name(dtype)));
  py::object& zero_d = *scalars[i];
  zero_d[py::tuple()] = py::float_(v);
  return zero_d[py::tuple()];
}

namespace {
std::string shape_str(const std::vector<int64_t>& shape) {  // as TensorView::shape_str
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += std::to_string(shape[i]) + (i + 1 < shape.size() ? ", " : "");
  return s + (shape.size() == 1 ? ",)" : ")");
}
}  // namespace

void check_shape(const std::vector<int64_t>& got, const char* name, const std::vector<int64_t>& expected) {
  if (got != expected)
    throw ValueError(std::string(name) + ": expected shape " + shape_str(expected) + ", got " + shape_str(got));
}

void check_shape(const TensorView& got, const char* name, const std::vector<int64_t>& expected) {
  bool same = got.ndim == static_cast<int>(expected.size());
  for (int i = 0; same && i < got.ndim; ++i) same = got.shape[i] == expected[i];
  if (!same) check_shape(shape_of(got), name, expected);
}

std::vector<int64_t> shape_of(const TensorView& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

bool same_shape(const TensorView& a, const TensorView& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

void check_same_shape(const TensorView& t, const char* name, const TensorView& ref, const char* ref_name) {
  if (!same_shape(t, ref))
    throw ValueError(std::string(name) + ": expected shape " + ref.shape_str() + " (the shape of " + ref_name +
                     "), got " + t.shape_str());
}

Activation activation_arg(py::handle obj) {
  if (obj.is_none()) return Activation::none;
  if (py::isinstance<py::str>(obj) && obj.cast<std::string>() == "relu") return Activation::relu;
  throw ValueError("activation: expected None or 'relu', got " + py::repr(obj).cast<std::string>());
}

namespace {

// A private C-contiguous int64 array of n values for host_indices: a view of one of a few kept
// arrays that nothing else holds (a call's KeepAlive holds the view, and so the array, until
// the call returns), else a new one. Steady training steps then allocate nothing for their
// labels or row indices. Touched only with the GIL held; never freed.
py::array reusable_int64(int64_t n) {
  constexpr size_t kKept = 4;
  static auto* kept = new std::vector<py::array>();
  py::array* free_small = nullptr;
  for (py::array& a : *kept) {
    if (Py_REFCNT(a.ptr()) != 1) continue;  // in use by a call (or a nested one) now
    if (a.shape(0) >= n) return a[py::slice(0, n, 1)];
    free_small = &a;
  }
  py::array fresh = py::array_t<int64_t>(std::max<int64_t>(n, 1));
  if (kept->size() < kKept)
    kept->push_back(fresh);
  else if (free_small)
    *free_small = fresh;
  return fresh[py::slice(0, n, 1)];
}

// dst[i] = a[i] for a 1-D integer array of any stride and of a kind/size that fits in int64
// (not uint64, which host_indices checks separately), without a call into Python.
template <typename S> void copy_strided(int64_t* dst, const py::array& a) {
  const char* src = static_cast<const char*>(a.data());
  const py::ssize_t stride = a.strides(0), n = a.shape(0);
  for (py::ssize_t i = 0; i < n; ++i) {
    S v;
    std::memcpy(&v, src + i * stride, sizeof(S));  // any alignment
    dst[i] = static_cast<int64_t>(v);
  }
}

void copy_to_int64(int64_t* dst, const py::array& a) {
  const bool is_signed = a.dtype().kind() == 'i';
  switch (a.dtype().itemsize()) {
    case 1: return is_signed ? copy_strided<int8_t>(dst, a) : copy_strided<uint8_t>(dst, a);
    case 2: return is_signed ? copy_strided<int16_t>(dst, a) : copy_strided<uint16_t>(dst, a);
    case 4: return is_signed ? copy_strided<int32_t>(dst, a) : copy_strided<uint32_t>(dst, a);
    case 8: return copy_strided<int64_t>(dst, a);
    default: throw TypeError("expected integers of 1, 2, 4 or 8 bytes, got " + dtype_str(a.dtype()));
  }
}

}  // namespace

py::array_t<int64_t> host_indices(py::handle obj, const char* name, int64_t length, const char* what,
                                  KeepAlive& keep) {
  if (!is_array(obj))
    throw TypeError(std::string(name) + ": expected a numpy.ndarray or cupy.ndarray of integers, got " +
                    type_name(obj));
  py::array a = host_values(obj);  // the checks read the values on the host
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw TypeError(std::string(name) + ": expected an integer array, got " + dtype_str(a.dtype()));
  if (a.ndim() != 1 || (length >= 0 && a.shape(0) != length))
    throw ValueError(std::string(name) + ": expected shape (" +
                     (length >= 0 ? "N,) = (" + std::to_string(length) + ",)" : std::string("M,)")) + ", got " +
                     py::str(a.attr("shape")).cast<std::string>());
  // A private copy, always (even of an int64 C-contiguous array): the caller checks these values
  // with the GIL held, then the kernels read them with the GIL released, when another Python
  // thread could write the caller's array; they must read exactly what was checked. The copy is
  // made before any check reads a value.
  // (No default-constructed py::array anywhere here: pybind11 makes that an empty float64
  // array, whose 1-byte allocation a steady training step would pay on every call.)
  if (kind == 'u' && a.dtype().itemsize() == 8) {
    // uint64 values >= 2**63 would wrap to negative numbers in the cast to int64.
    py::array own = a.attr("copy")();
    py::object too_big = own.attr("__ge__")(py::int_(1).attr("__lshift__")(63)).attr("any")();
    if (too_big.cast<bool>())
      throw ValueError(std::string(name) + ": expected " + what + ", got a value >= 2**63");
    py::array values = own.attr("astype")("int64");
    keep.push_back(values);
    return py::array_t<int64_t>(values);
  }
  py::array values = reusable_int64(a.shape(0));
  copy_to_int64(static_cast<int64_t*>(values.mutable_data()), a);
  keep.push_back(values);
  return py::array_t<int64_t>(values);
}

}  // namespace fdnn::bind
