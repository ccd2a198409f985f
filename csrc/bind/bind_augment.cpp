// Binding of augment: the image array (x, out) is checked here; the per-sample parameters come
// as a dict of host NumPy arrays of length N (python/fusednn/ops/augment.py checks their values
// and dtypes first) and become one AugmentSample per sample on the host.
#include <cmath>
#include <string>
#include <vector>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/augment.h"

namespace fdnn::bind {
namespace {

template <typename V> using HostArray = py::array_t<V, py::array::c_style | py::array::forcecast>;

// params[key] as a contiguous host array of n values of type V.
template <typename V> HostArray<V> param(const py::dict& params, const char* key, int64_t n, KeepAlive& keep) {
  const std::string name = std::string("params['") + key + "']";
  if (!params.contains(key)) throw ValueError(name + ": missing (see ops.augment_params for the keys)");
  py::object obj = params[key];
  if (!py::isinstance<py::array>(obj))
    throw TypeError(name + ": expected a NumPy array on the host, got " + type_name(obj));
  HostArray<V> a = HostArray<V>::ensure(obj);
  if (!a) throw TypeError(name + ": expected a numeric NumPy array, got " + type_name(obj));
  if (a.ndim() != 1 || a.shape(0) != n)
    throw ValueError(name + ": expected shape (" + std::to_string(n) + ",) (one value per sample), got " +
                     py::str(obj.attr("shape")).cast<std::string>());
  keep.push_back(a);
  return a;
}

py::object augment_py(py::object x_obj, py::object c_obj, py::object h_obj, py::object w_obj, py::dict params,
                      py::object interpolation, py::object fill_obj, py::object clip_obj, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView x = input_array(x_obj, "x", keep);
  const int64_t c = int64_arg(c_obj, "channels"), h = int64_arg(h_obj, "height"), w = int64_arg(w_obj, "width");
  if (c < 1 || h < 1 || w < 1) throw ValueError("image_shape: expected positive sizes (C, H, W)");
  if (x.ndim < 1) throw ValueError("x: expected an array with ndim >= 1 (samples first), got 0-D");
  const int64_t n = x.shape[0];
  if (x.numel() != n * c * h * w)
    throw ValueError("x: expected " + std::to_string(c * h * w) + " values per sample (C, H, W = " +
                     std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) + "), got shape " +
                     py::str(x_obj.attr("shape")).cast<std::string>());
  AugmentShape g{};
  g.c = c;
  g.h = h;
  g.w = w;
  g.nearest = choice_arg(interpolation, "interpolation", {"bilinear", "nearest"}) == "nearest";
  g.fill = float_arg(fill_obj, "fill");
  if (!clip_obj.is_none()) {
    py::tuple pair = clip_obj.cast<py::tuple>();
    g.clip = 1;
    g.clip_lo = float_arg(pair[0], "clip");
    g.clip_hi = float_arg(pair[1], "clip");
  }
  g.gray_weight[0] = 0.2989;  // torchvision's rgb_to_grayscale (ITU-R 601-2 luma)
  g.gray_weight[1] = 0.587;
  g.gray_weight[2] = 0.114;

  const auto angle = param<double>(params, "angle", n, keep), tx = param<double>(params, "translate_x", n, keep),
             ty = param<double>(params, "translate_y", n, keep), scale = param<double>(params, "scale", n, keep),
             shx = param<double>(params, "shear_x", n, keep), shy = param<double>(params, "shear_y", n, keep),
             bright = param<double>(params, "brightness", n, keep),
             contrast = param<double>(params, "contrast", n, keep),
             nmean = param<double>(params, "noise_mean", n, keep), nstd = param<double>(params, "noise_std", n, keep),
             evalue = param<double>(params, "erase_value", n, keep);
  const auto hflip = param<bool>(params, "hflip", n, keep), vflip = param<bool>(params, "vflip", n, keep),
             erase = param<bool>(params, "erase", n, keep), erandom = param<bool>(params, "erase_random", n, keep);
  const auto etop = param<int64_t>(params, "erase_top", n, keep),
             eleft = param<int64_t>(params, "erase_left", n, keep),
             eh = param<int64_t>(params, "erase_height", n, keep), ew = param<int64_t>(params, "erase_width", n, keep);
  const auto key = param<uint64_t>(params, "noise_seed", n, keep);

  std::vector<AugmentSample> samples(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    AugmentRaw r{};
    r.angle = angle.data()[i];
    r.translate_x = tx.data()[i];
    r.translate_y = ty.data()[i];
    r.scale = scale.data()[i];
    r.shear_x = shx.data()[i];
    r.shear_y = shy.data()[i];
    r.hflip = hflip.data()[i];
    r.vflip = vflip.data()[i];
    r.brightness = bright.data()[i];
    r.contrast = contrast.data()[i];
    r.noise_mean = nmean.data()[i];
    r.noise_std = nstd.data()[i];
    r.erase_value = evalue.data()[i];
    r.erase = erase.data()[i];
    r.erase_random = erandom.data()[i];
    r.erase_top = etop.data()[i];
    r.erase_left = eleft.data()[i];
    r.erase_height = eh.data()[i];
    r.erase_width = ew.data()[i];
    r.noise_seed = key.data()[i];
    samples[static_cast<size_t>(i)] = augment_sample(r, h, w);
  }
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_no_overlap(y, "out", x, "x");
  py::gil_scoped_release release;
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    augment<T>(y.ptr<T>(), x.ptr<T>(), n, g, samples.data(), stream);
  });
  return out;
}

}  // namespace

void bind_augment(py::module_& m) {
  m.def("augment", &augment_py, py::arg("x"), py::arg("channels"), py::arg("height"), py::arg("width"),
        py::arg("params"), py::arg("interpolation"), py::arg("fill"), py::arg("clip"), py::arg("out"));
}

}  // namespace fdnn::bind
