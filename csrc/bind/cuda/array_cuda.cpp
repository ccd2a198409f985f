// CuPy arrays -> TensorViews (the CUDA module; NumPy arrays: ../array.cpp). Arrays are read
// through __cuda_array_interface__ and must be on the current device; inputs that are not
// C-contiguous and aligned are copied (cupy.array) and new arrays come from cupy.empty.
#include <string>

#include "bind/array.h"

namespace fdnn::bind {

namespace {

py::module_ cupy() { return py::module_::import("cupy"); }

// The array's interface; checks that it lives on the current device (the kernels launch there).
py::dict interface_of(py::handle obj, const char* name) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw TypeError(std::string(name) + ": expected a cupy.ndarray, got " + type_name(obj));
  const py::module_ cuda = cupy().attr("cuda");
  if (py::hasattr(obj, "device")) {
    const int device = obj.attr("device").attr("id").cast<int>();
    const int current = cuda.attr("runtime").attr("getDevice")().cast<int>();
    if (device != current)
      throw ValueError(std::string(name) + ": expected an array on the current device " + std::to_string(current) +
                       ", got one on device " + std::to_string(device) + " (use `with cupy.cuda.Device(" +
                       std::to_string(device) + "):`)");
  }
  return obj.attr("__cuda_array_interface__").cast<py::dict>();
}

bool dtype_of(const std::string& typestr, DType& out) {
  if (typestr == "<f4") return out = DType::float32, true;
  if (typestr == "<f8") return out = DType::float64, true;
  return false;
}

struct Parsed {
  TensorView view;
  bool contiguous = true, aligned = true, readonly = false, float_dtype = false;
  std::string typestr;
};

Parsed parse(py::handle obj, const char* name) {
  const py::dict ai = interface_of(obj, name);
  Parsed p;
  p.typestr = ai["typestr"].cast<std::string>();
  p.float_dtype = dtype_of(p.typestr, p.view.dtype);
  const py::tuple shape = ai["shape"].cast<py::tuple>();
  if (shape.size() > static_cast<size_t>(kMaxDims))
    throw ValueError(std::string(name) + ": expected at most " + std::to_string(kMaxDims) + " dimensions, got " +
                     std::to_string(shape.size()));
  p.view.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < p.view.ndim; ++i) p.view.shape[i] = shape[i].cast<int64_t>();
  const py::tuple data = ai["data"].cast<py::tuple>();
  p.view.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  p.readonly = data[1].cast<bool>();
  const int64_t item = p.view.dtype == DType::float32 ? 4 : 8;
  p.aligned = reinterpret_cast<uintptr_t>(p.view.data) % item == 0;
  int64_t expect = item;
  for (int i = p.view.ndim - 1; i >= 0; --i) {
    p.view.strides[i] = expect / item;
    expect *= p.view.shape[i];
  }
  if (ai.contains("strides") && !ai["strides"].is_none()) {
    const py::tuple strides = ai["strides"].cast<py::tuple>();
    for (int i = 0; i < p.view.ndim; ++i) {
      const int64_t s = strides[i].cast<int64_t>();
      if (p.view.shape[i] > 1 && s != p.view.strides[i] * item) p.contiguous = false;
    }
  }
  return p;
}

}  // namespace

TensorView input_array(py::handle obj, const char* name, KeepAlive& keep) {
  Parsed p = parse(obj, name);
  if (!p.float_dtype)
    throw TypeError(std::string(name) + ": expected dtype float32 or float64, got " + p.typestr);
  if (!p.contiguous || !p.aligned) {
    py::object copy = cupy().attr("array")(obj, py::arg("order") = "C", py::arg("copy") = true);
    keep.push_back(copy);
    p = parse(copy, name);
  }
  return p.view;
}

TensorView output_array(py::handle obj, const char* name, DType dtype, const std::vector<int64_t>& shape) {
  const Parsed p = parse(obj, name);
  if (!p.float_dtype || p.view.dtype != dtype)
    throw TypeError(std::string(name) + ": expected dtype " + dtype_name(dtype) + ", got " + p.typestr);
  check_shape(p.view, name, shape);
  if (p.readonly) throw ValueError(std::string(name) + ": expected a writable array, got a read-only one");
  if (!p.contiguous || !p.aligned)
    throw ValueError(std::string(name) +
                     ": expected a C-contiguous, aligned array (it is written in place, so it cannot be copied)");
  return p.view;
}

TensorView new_array(py::object& obj, DType dtype, const std::vector<int64_t>& shape) {
  py::tuple s(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) s[i] = py::int_(shape[i]);
  obj = cupy().attr("empty")(s, py::arg("dtype") = dtype_name(dtype));
  return parse(obj, "out").view;
}

Stream call_stream() {
  return Stream{cupy().attr("cuda").attr("get_current_stream")().attr("ptr").cast<uintptr_t>()};
}

bool is_array(py::handle obj) { return py::hasattr(obj, "__cuda_array_interface__"); }

const uint8_t* bool_array(py::handle obj, const char* name, const std::vector<int64_t>& shape, KeepAlive& keep) {
  Parsed p = parse(obj, name);
  if (p.typestr != "|b1") throw TypeError(std::string(name) + ": expected a boolean array, got dtype " + p.typestr);
  check_shape(p.view, name, shape);
  // parse() computed the contiguous strides for a 4-byte item; recheck with 1-byte items.
  const py::dict ai = obj.attr("__cuda_array_interface__").cast<py::dict>();
  if (ai.contains("strides") && !ai["strides"].is_none()) {
    py::object copy = cupy().attr("ascontiguousarray")(obj);
    keep.push_back(copy);
    p = parse(copy, name);
  }
  return static_cast<const uint8_t*>(p.view.data);
}

std::vector<int64_t> array_shape(py::handle obj) { return shape_of(parse(obj, "array").view); }

py::object host_values(py::handle obj) {
  interface_of(obj, "array");
  return cupy().attr("asnumpy")(obj);
}

const int64_t* kernel_int64(const py::array_t<int64_t>& host, KeepAlive& keep) {
  py::object device = cupy().attr("asarray")(host);
  keep.push_back(device);
  return static_cast<const int64_t*>(parse(device, "labels").view.data);
}

}  // namespace fdnn::bind
