// NumPy arrays -> TensorViews (the CPU module); CuPy arrays: cuda/array_cuda.cpp.
#include "bind/array.h"
#include "cpu/output_pool.h"

namespace fdnn::bind {

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
  check_shape(v, name, shape);
  if (!a.writeable()) throw ValueError(std::string(name) + ": expected a writable array, got a read-only one");
  if (!contiguous_aligned(a))
    throw ValueError(std::string(name) +
                     ": expected a C-contiguous, aligned array (it is written in place, so it cannot be copied), "
                     "got strides " +
                     py::str(py::tuple(a.attr("strides"))).cast<std::string>());
  return v;
}

namespace {

// The owner of a pooled block: the base object of the array built on its data.
struct PooledBlock {
  void* data;
  size_t bytes;
};

void release_pooled_block(void* owner) {
  auto* block = static_cast<PooledBlock*>(owner);
  pooled_release(block->data, block->bytes);
  delete block;
}

}  // namespace

TensorView new_array(py::object& obj, DType dtype, const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  const py::ssize_t itemsize = dtype == DType::float32 ? 4 : 8;
  size_t bytes = static_cast<size_t>(itemsize);
  for (py::ssize_t d : s) bytes *= static_cast<size_t>(d);
  if (bytes >= kMinPooledBytes) {
    // A large output on a block of the output pool (cpu/output_pool.h), returned to the pool
    // when the array and every view of it are gone.
    auto* block = new PooledBlock{nullptr, bytes};
    try {
      block->data = pooled_allocate(bytes);
    } catch (...) {
      delete block;
      throw;
    }
    py::capsule owner(block, release_pooled_block);
    std::vector<py::ssize_t> strides(s.size());
    py::ssize_t stride = itemsize;
    for (size_t i = s.size(); i-- > 0;) {
      strides[i] = stride;
      stride *= s[i];
    }
    const py::dtype dt = dtype == DType::float32 ? py::dtype::of<float>() : py::dtype::of<double>();
    obj = py::array(dt, s, strides, block->data, owner);
  } else {
    // (Not through a default-constructed py::array: that is an empty array of its own.)
    obj = dtype == DType::float32 ? py::array(py::array_t<float>(s)) : py::array(py::array_t<double>(s));
  }
  const py::array a = py::reinterpret_borrow<py::array>(obj);
  return view_of(a, dtype, "out");
}

Stream call_stream() { return Stream{}; }

bool is_array(py::handle obj) { return py::isinstance<py::array>(obj); }

const uint8_t* bool_array(py::handle obj, const char* name, const std::vector<int64_t>& shape, KeepAlive& keep) {
  py::array a = as_ndarray(obj, name);
  if (a.dtype().kind() != 'b')
    throw TypeError(std::string(name) + ": expected a boolean array, got dtype " + dtype_str(a.dtype()));
  check_shape(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()), name, shape);
  if (!(a.flags() & py::array::c_style)) {
    a = py::module_::import("numpy").attr("ascontiguousarray")(a);
    keep.push_back(a);
  }
  return static_cast<const uint8_t*>(a.data());
}

std::vector<int64_t> array_shape(py::handle obj) {
  const py::array a = py::reinterpret_borrow<py::array>(obj);
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

py::object host_values(py::handle obj) { return py::reinterpret_borrow<py::object>(obj); }

const int64_t* kernel_int64(const py::array_t<int64_t>& host, KeepAlive&) { return host.data(); }

}  // namespace fdnn::bind
