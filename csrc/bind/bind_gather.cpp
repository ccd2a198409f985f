// Binding of gather_rows: the index is checked (integers in [-N, N), negative ones counting
// from the end, as NumPy's x[idx]) before any copy.
#include <string>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/gather.h"

namespace fdnn::bind {
namespace {

py::object gather_rows_py(py::object x_obj, py::object index_obj, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  if (x.ndim < 1) throw ValueError("x: expected an array with ndim >= 1 (rows first), got 0-D");
  const int64_t n = x.shape[0];
  // host_indices' private copy: the kernel reads the values checked here, whatever another
  // thread writes into the caller's array once the GIL is released. Negative indices are
  // counted from the end in that copy.
  py::array_t<int64_t> index = host_indices(index_obj, "index", -1, "row indices", keep);
  const int64_t m = index.shape(0);
  int64_t* idx = index.mutable_data();
  for (int64_t i = 0; i < m; ++i) {
    if (idx[i] < -n || idx[i] >= n)
      throw ValueError("index: expected row indices in [-" + std::to_string(n) + ", " + std::to_string(n) +
                       ") (x has " + std::to_string(n) + " rows), got " + std::to_string(idx[i]) + " at position " +
                       std::to_string(i));
    if (idx[i] < 0) idx[i] += n;
  }
  const int64_t* kernel_index = kernel_int64(index, keep);
  std::vector<int64_t> shape = shape_of(x);
  shape[0] = m;
  int64_t row = 1;
  for (size_t d = 1; d < shape.size(); ++d) row *= shape[d];
  const TensorView y = output_or_new(out, "out", x.dtype, shape);
  check_no_overlap(y, "out", x, "x");
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    gather_rows<T>(y.ptr<T>(), x.ptr<T>(), kernel_index, m, row, stream);
  });
  return out;
}

}  // namespace

void bind_gather(py::module_& m) {
  m.def("gather_rows", &gather_rows_py, py::arg("x"), py::arg("index"), py::arg("out"));
}

}  // namespace fdnn::bind
