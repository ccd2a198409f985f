#include "bind/array.h"

namespace fdnn::bind {

std::string type_name(py::handle obj) {
  py::handle type = reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr()));
  return py::str(type.attr("__module__")).cast<std::string>() + "." +
         py::str(type.attr("__qualname__")).cast<std::string>();
}

std::string dtype_str(const py::dtype& dt) { return py::str(dt).cast<std::string>(); }

namespace {

py::array as_ndarray(py::handle obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw TypeError(std::string(name) + ": expected a numpy.ndarray, got " + type_name(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

// float32 or float64 in native byte order, read off the descriptor without Python calls
// (dtype equality goes through NumPy's cast machinery, ~100 ns a call); false when unsure.
bool native_float_dtype(const py::array& a, DType& out) {
  const auto* descr = py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr);
  constexpr char native = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? '>' : '<';
  if (descr->byteorder != '=' && descr->byteorder != native) return false;
  if (descr->type_num == py::detail::npy_api::NPY_FLOAT_) {
    out = DType::float32;
    return true;
  }
  if (descr->type_num == py::detail::npy_api::NPY_DOUBLE_) {
    out = DType::float64;
    return true;
  }
  return false;
}

DType float_dtype(const py::array& a, const char* name) {
  DType fast;
  if (native_float_dtype(a, fast)) return fast;
  const py::dtype dt = a.dtype();
  if (dt.equal(py::dtype::of<float>())) return DType::float32;
  if (dt.equal(py::dtype::of<double>())) return DType::float64;
  throw TypeError(std::string(name) + ": expected dtype float32 or float64, got " + dtype_str(dt));
}

TensorView view_of(const py::array& a, DType dtype, const char* name) {
  if (a.ndim() > kMaxDims)
    throw ValueError(std::string(name) + ": expected at most " + std::to_string(kMaxDims) + " dimensions, got " +
                     std::to_string(a.ndim()));
  TensorView v;
  v.data = const_cast<void*>(a.data());
  v.dtype = dtype;
  v.ndim = static_cast<int>(a.ndim());
  for (int i = 0; i < v.ndim; ++i) {
    v.shape[i] = a.shape(i);
    v.strides[i] = a.strides(i) / a.itemsize();
  }
  return v;
}

constexpr int kContiguousAligned = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

bool contiguous_aligned(const py::array& a) {
  return (py::detail::array_proxy(a.ptr())->flags & kContiguousAligned) == kContiguousAligned;
}

}  // namespace

TensorView input_array(py::handle obj, const char* name, KeepAlive& keep) {
  py::array a = as_ndarray(obj, name);
  const DType dtype = float_dtype(a, name);
  if (!contiguous_aligned(a)) {
    // A fresh C-ordered copy (np.ascontiguousarray would return an unaligned input as is).
    a = py::module_::import("numpy").attr("array")(a, py::arg("order") = "C", py::arg("copy") = true);
    keep.push_back(a);
  }
  return view_of(a, dtype, name);
}

TensorView output_array(py::handle obj, const char* name, DType dtype, const std::vector<int64_t>& shape) {
  py::array a = as_ndarray(obj, name);
  DType fast;
  if (!native_float_dtype(a, fast) || fast != dtype) {
    const py::dtype dt = a.dtype();
    const bool dtype_ok =
        dtype == DType::float32 ? dt.equal(py::dtype::of<float>()) : dt.equal(py::dtype::of<double>());
    if (!dtype_ok)
      throw TypeError(std::string(name) + ": expected dtype " + dtype_name(dtype) + ", got " + dtype_str(dt));
  }
  TensorView v = view_of(a, dtype, name);
  bool shape_ok = v.ndim == static_cast<int>(shape.size());
  for (int i = 0; shape_ok && i < v.ndim; ++i) shape_ok = v.shape[i] == shape[i];
  if (!shape_ok) {
    TensorView want;
    want.ndim = static_cast<int>(shape.size());
    for (int i = 0; i < want.ndim; ++i) want.shape[i] = shape[i];
    throw ValueError(std::string(name) + ": expected shape " + want.shape_str() + ", got " + v.shape_str());
  }
  if (!a.writeable()) throw ValueError(std::string(name) + ": expected a writable array, got a read-only one");
  if (!contiguous_aligned(a))
    throw ValueError(std::string(name) +
                     ": expected a C-contiguous, aligned array (it is written in place, so it cannot be copied), "
                     "got strides " +
                     py::str(py::tuple(a.attr("strides"))).cast<std::string>());
  return v;
}

TensorView new_array(py::object& obj, DType dtype, const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array a = dtype == DType::float32 ? py::array(py::array_t<float>(s)) : py::array(py::array_t<double>(s));
  obj = a;
  return view_of(a, dtype, "out");
}

}  // namespace fdnn::bind

namespace fdnn::bind {

double float_arg(py::handle obj, const char* name, const char* expected) {
  const bool is_bool = py::isinstance<py::bool_>(obj) || type_name(obj) == "numpy.bool";
  if (is_bool || !(py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj) ||
                   (py::hasattr(obj, "__float__") && py::hasattr(obj, "dtype") && py::hasattr(obj, "real"))))
    throw TypeError(std::string(name) + ": expected " + expected + ", got " + py::repr(obj).cast<std::string>());
  return obj.cast<double>();
}

namespace {
py::object as_python_int(py::handle obj, const char* name, const char* expected) {
  if (py::isinstance<py::bool_>(obj) || !py::hasattr(obj, "__index__"))
    throw TypeError(std::string(name) + ": expected " + expected + ", got " + py::repr(obj).cast<std::string>());
  return py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
}
}  // namespace

uint64_t uint64_arg(py::handle obj, const char* name) {
  py::object v = as_python_int(obj, name, "an integer in [0, 2**64)");
  if (v < py::int_(0) || v >= py::int_(1).attr("__lshift__")(64))
    throw ValueError(std::string(name) + ": expected an integer in [0, 2**64), got " + py::repr(v).cast<std::string>());
  return v.cast<uint64_t>();
}

int64_t int64_arg(py::handle obj, const char* name) {
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

py::object numpy_scalar(double v, DType dtype) { return py::module_::import("numpy").attr(dtype_name(dtype))(v); }

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

}  // namespace fdnn::bind
