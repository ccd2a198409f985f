// Binding of augment: the image array (x, out) is checked here; the per-sample parameters come
// as a dict of host NumPy arrays of length N (python/fusednn/ops/augment.py checks their values
// and dtypes first) and become one AugmentSample per sample on the host.
#include <cmath>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bind/array.h"
#include "bind/bind.h"
#include "common/avx512_paths.h"
#include "common/parallel.h"
#include "common/philox.h"
#include "cpu/philox_avx512.h"
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

// The image array and the call's options (augment and _augment_drawn).
struct Call {
  TensorView x;
  int64_t n;
  AugmentShape g;
};

Call parse_call(py::object x_obj, py::object c_obj, py::object h_obj, py::object w_obj, py::object interpolation,
                py::object fill_obj, py::object clip_obj, KeepAlive& keep) {
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
  return Call{x, n, g};
}

py::object augment_py(py::object x_obj, py::object c_obj, py::object h_obj, py::object w_obj, py::dict params,
                      py::object interpolation, py::object fill_obj, py::object clip_obj, py::object out) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const Call call = parse_call(x_obj, c_obj, h_obj, w_obj, interpolation, fill_obj, clip_obj, keep);
  const TensorView& x = call.x;
  const int64_t n = call.n, h = call.g.h, w = call.g.w;
  const AugmentShape& g = call.g;

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

  const double *angle_p = angle.data(), *tx_p = tx.data(), *ty_p = ty.data(), *scale_p = scale.data(),
               *shx_p = shx.data(), *shy_p = shy.data(), *bright_p = bright.data(), *contrast_p = contrast.data(),
               *nmean_p = nmean.data(), *nstd_p = nstd.data(), *evalue_p = evalue.data();
  const bool *hflip_p = hflip.data(), *vflip_p = vflip.data(), *erase_p = erase.data(), *erandom_p = erandom.data();
  const int64_t *etop_p = etop.data(), *eleft_p = eleft.data(), *eh_p = eh.data(), *ew_p = ew.data();
  const uint64_t* key_p = key.data();
  std::vector<AugmentSample> samples(static_cast<size_t>(n));
  const TensorView y = output_or_new(out, "out", x.dtype, shape_of(x));
  check_no_overlap(y, "out", x, "x");
  py::gil_scoped_release release;
  // The samples' maps (trigonometry, ~0.1 us each) in blocks on the thread pool where the kernel's
  // loop is parallel too (the same work estimate; waking the workers for the maps alone costs more
  // than it saves), then the kernel.
  const auto build_maps = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      AugmentRaw r{};
      r.angle = angle_p[i];
      r.translate_x = tx_p[i];
      r.translate_y = ty_p[i];
      r.scale = scale_p[i];
      r.shear_x = shx_p[i];
      r.shear_y = shy_p[i];
      r.hflip = hflip_p[i];
      r.vflip = vflip_p[i];
      r.brightness = bright_p[i];
      r.contrast = contrast_p[i];
      r.noise_mean = nmean_p[i];
      r.noise_std = nstd_p[i];
      r.erase_value = evalue_p[i];
      r.erase = erase_p[i];
      r.erase_random = erandom_p[i];
      r.erase_top = etop_p[i];
      r.erase_left = eleft_p[i];
      r.erase_height = eh_p[i];
      r.erase_width = ew_p[i];
      r.noise_seed = key_p[i];
      samples[static_cast<size_t>(i)] = augment_sample(r, h, w);
    }
  };
#ifdef FDNN_CUDA_BINDINGS
  build_maps(0, n);  // the CUDA module has no CPU thread pool: its host work runs on the caller
#else
  parallel_for(n, 64, g.c * h * w * 8, build_maps);
#endif
  dispatch(x.dtype, [&](auto t) {
    using T = decltype(t);
    augment<T>(y.ptr<T>(), x.ptr<T>(), n, g, samples.data(), stream);
  });
  return out;
}

#ifndef FDNN_CUDA_BINDINGS  // host-only helpers (no array arguments, or CPU arrays only): the CPU module has them
// The draws of ops.augment_params (python/fusednn/ops/augment.py documents the laws and checks
// the spec first): sample i's words are 64 i .. 64 i + 35 of the Philox stream (seed, offset)
// (sample 0's for every sample with same_on_batch), u_s = word s / 2^32, and every value is the
// Python formula's, term for term in double. `spec` holds, in this order: degrees (lo, hi),
// translate (fx, fy), scale (lo, hi), shear (xlo, xhi, ylo, yhi), hflip, vflip, erase
// probabilities, brightness (lo, hi), contrast (lo, hi), noise, noise_mean, erase_scale (lo,
// hi), log erase_ratio (lo, hi), erase_value, erase_random (0 or 1): 25 numbers.
// lo + (hi - lo) u, the Python formula's bits also where the compiler could contract it into a
// multiply-add (a FUSEDNN_NATIVE build with FMA): a function of its own, which GCC does not inline
// into callers with other options (Clang takes the pragma).
__attribute__((optimize("fp-contract=off"))) double uniform_between(double lo, double hi, double u) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  return lo + (hi - lo) * u;
}

struct ParamsDraw {
  PhiloxStream stream;
  bool same_on_batch;
  int64_t h, w, erase_tries;
  std::vector<double> spec;
  bool mirror_h = false, mirror_v = false;  // Compose's flips listed after an affine transform

  ParamsDraw(int64_t n, uint64_t seed, uint64_t offset, bool same, int64_t height, int64_t width,
             std::vector<double> values, int64_t tries)
      : stream(seed, offset), same_on_batch(same), h(height), w(width), erase_tries(tries), spec(std::move(values)) {
    if (n < 0 || spec.size() != 25 || h < 1 || w < 1)
      throw ValueError("_augment_params_draw: expected n >= 0, positive h and w and 25 spec values");
    // Try t reads words 16 + 2 t and 17 + 2 t of the sample's 36.
    if (erase_tries < 0 || erase_tries > 10)
      throw ValueError("_augment_params_draw: erase_tries must be in [0, 10] (a sample has 36 words, tries read "
                       "words 16 .. 35), got " +
                       std::to_string(erase_tries));
  }

  // Samples i0 .. i1 - 1 into out[0 .. i1 - i0).
  void operator()(int64_t i0, int64_t i1, AugmentRaw* out) const {
#if defined(__x86_64__)
    static const bool avx512 = avx512_paths_enabled();
#endif
    const double hd = static_cast<double>(h), wd = static_cast<double>(w), area0 = hd * wd;
    const double fx = spec[2], fy = spec[3];
    const double tx_lo = -fx * wd, tx_hi = fx * wd, ty_lo = -fy * hd, ty_hi = fy * hd;
    double u[36];
    uint32_t words[36];
    alignas(64) uint32_t lanes[9][64];  // block b of samples g .. g + 15 (g % 16 == 0): word t at [b][16 t + lane]
    for (int64_t i = i0; i < i1; ++i) {
      if (i == i0 || !same_on_batch) {
#if defined(__x86_64__)
        if (avx512 && !same_on_batch) {  // 16 samples' blocks at a time (cpu/philox_avx512.h)
          const int64_t lane = i % 16, group = i - lane;
          if (lane == 0 || i == i0) {
            for (int b = 0; b < 9; ++b) {
              for (int l = 0; l < 16; ++l) {
                const uint64_t j = 16 * static_cast<uint64_t>(group + l) + static_cast<uint64_t>(b);
                lanes[b][l] = static_cast<uint32_t>(j);
                lanes[b][16 + l] = static_cast<uint32_t>(j >> 32);
                lanes[b][32 + l] = stream.o0;
                lanes[b][48 + l] = stream.o1;
              }
              philox_rounds_avx512(lanes[b], stream.k0, stream.k1);
            }
          }
          for (int b = 0; b < 9; ++b)
            for (int t = 0; t < 4; ++t) words[4 * b + t] = lanes[b][16 * t + lane];
        } else
#endif
        {
          for (int b = 0; b < 9; ++b)
            stream.block(16 * static_cast<uint64_t>(same_on_batch ? 0 : i) + b, words[4 * b], words[4 * b + 1],
                         words[4 * b + 2], words[4 * b + 3]);
        }
        for (int s = 0; s < 36; ++s) u[s] = static_cast<double>(words[s]) * 2.3283064365386963e-10;  // 2^-32
      }
      auto uniform = [&](int slot, double lo, double hi) { return uniform_between(lo, hi, u[slot]); };
      AugmentRaw& r = out[i - i0];
      r.angle = uniform(0, spec[0], spec[1]);
      r.translate_x = uniform(1, tx_lo, tx_hi);
      r.translate_y = uniform(2, ty_lo, ty_hi);
      r.scale = uniform(3, spec[4], spec[5]);
      r.shear_x = uniform(4, spec[6], spec[7]);
      r.shear_y = uniform(5, spec[8], spec[9]);
      r.hflip = u[6] < spec[10];
      r.vflip = u[7] < spec[11];
      r.brightness = uniform(8, spec[13], spec[14]);
      r.contrast = uniform(9, spec[15], spec[16]);
      r.noise_mean = spec[18];
      r.noise_std = spec[17];
      // Random erasing: the first of the tries whose rounded box fits strictly inside the image.
      int64_t height = 0, width = 0;
      bool found = false;
      if (u[10] < spec[12]) {
        for (int64_t t = 0; t < erase_tries && !found; ++t) {
          const double area = area0 * uniform(16 + 2 * static_cast<int>(t), spec[19], spec[20]);
          const double aspect = std::exp(uniform(17 + 2 * static_cast<int>(t), spec[21], spec[22]));
          const double bh = std::nearbyint(std::sqrt(area * aspect)), bw = std::nearbyint(std::sqrt(area / aspect));
          if (bh < hd && bw < wd) {
            height = static_cast<int64_t>(bh);
            width = static_cast<int64_t>(bw);
            found = true;
          }
        }
      }
      r.erase = found;
      r.erase_height = height;
      r.erase_width = width;
      r.erase_top = found ? static_cast<int64_t>(std::floor(u[11] * static_cast<double>(h - height + 1))) : 0;
      r.erase_left = found ? static_cast<int64_t>(std::floor(u[12] * static_cast<double>(w - width + 1))) : 0;
      r.erase_random = spec[24] != 0.0;
      r.erase_value = r.erase_random ? 0.0 : spec[23];
      r.noise_seed = static_cast<uint64_t>(words[13]) | (static_cast<uint64_t>(words[14]) << 32);
      // Compose.params' mirroring (transforms.py), axis h first: a flip listed after the affine map
      // is applied before it with the mirrored angle, shears and shift.
      if (mirror_h && r.hflip) {
        r.angle = -r.angle;
        r.shear_x = -r.shear_x;
        r.shear_y = -r.shear_y;
        r.translate_x = -r.translate_x;
      }
      if (mirror_v && r.vflip) {
        r.angle = -r.angle;
        r.shear_x = -r.shear_x;
        r.shear_y = -r.shear_y;
        r.translate_y = -r.translate_y;
      }
    }
  }
};

py::dict augment_params_draw_py(int64_t n, uint64_t seed, uint64_t offset, bool same_on_batch, int64_t h, int64_t w,
                                const std::vector<double>& spec, int64_t erase_tries) {
  const ParamsDraw draw(n, seed, offset, same_on_batch, h, w, spec, erase_tries);
  const size_t count = static_cast<size_t>(n);
  py::array_t<double> angle(count), tx(count), ty(count), scale(count), shx(count), shy(count), bright(count),
      contrast(count), nmean(count), nstd(count), evalue(count);
  py::array_t<bool> hflip(count), vflip(count), erase(count), erandom(count);
  py::array_t<int64_t> etop(count), eleft(count), eh(count), ew(count);
  py::array_t<uint64_t> key(count);
  {
    double *a = angle.mutable_data(), *x_ = tx.mutable_data(), *y_ = ty.mutable_data(), *sc = scale.mutable_data(),
           *sx = shx.mutable_data(), *sy = shy.mutable_data(), *br = bright.mutable_data(),
           *co = contrast.mutable_data(), *nm = nmean.mutable_data(), *ns = nstd.mutable_data(),
           *ev = evalue.mutable_data();
    bool *hf = hflip.mutable_data(), *vf = vflip.mutable_data(), *er = erase.mutable_data(),
         *rnd = erandom.mutable_data();
    int64_t *top = etop.mutable_data(), *left = eleft.mutable_data(), *hh = eh.mutable_data(), *ww = ew.mutable_data();
    uint64_t* k = key.mutable_data();
    py::gil_scoped_release release;
    // Blocks of 64 samples on the thread pool (each sample's values depend on its index only; the
    // blocks start at multiples of 16, the AVX-512 path's groups).
    parallel_for(n, 64, 256, [&](int64_t i0, int64_t i1) {
      AugmentRaw raw[64];
      draw(i0, i1, raw);
      for (int64_t i = i0; i < i1; ++i) {
        const AugmentRaw& r = raw[i - i0];
        a[i] = r.angle;
        x_[i] = r.translate_x;
        y_[i] = r.translate_y;
        sc[i] = r.scale;
        sx[i] = r.shear_x;
        sy[i] = r.shear_y;
        hf[i] = r.hflip;
        vf[i] = r.vflip;
        br[i] = r.brightness;
        co[i] = r.contrast;
        nm[i] = r.noise_mean;
        ns[i] = r.noise_std;
        er[i] = r.erase;
        hh[i] = r.erase_height;
        ww[i] = r.erase_width;
        top[i] = r.erase_top;
        left[i] = r.erase_left;
        rnd[i] = r.erase_random;
        ev[i] = r.erase_value;
        k[i] = r.noise_seed;
      }
    });
  }
  py::dict out;
  out["angle"] = angle;
  out["translate_x"] = tx;
  out["translate_y"] = ty;
  out["scale"] = scale;
  out["shear_x"] = shx;
  out["shear_y"] = shy;
  out["hflip"] = hflip;
  out["vflip"] = vflip;
  out["brightness"] = bright;
  out["contrast"] = contrast;
  out["noise_mean"] = nmean;
  out["noise_std"] = nstd;
  out["erase"] = erase;
  out["erase_top"] = etop;
  out["erase_left"] = eleft;
  out["erase_height"] = eh;
  out["erase_width"] = ew;
  out["erase_value"] = evalue;
  out["erase_random"] = erandom;
  out["noise_seed"] = key;
  return out;
}

// Compose's call on NumPy arrays (python/fusednn/data/transforms.py checks seed, offset and the
// spec first): the parameters of _augment_params_draw (with Compose's mirroring) applied as
// augment applies them, drawn block by block on the kernel's worker threads instead of as arrays
// first. Bitwise the result of augment(x, Compose.params(...)).
py::object augment_drawn_py(py::object x_obj, py::object c_obj, py::object h_obj, py::object w_obj, uint64_t seed,
                            uint64_t offset, bool same_on_batch, const std::vector<double>& spec, int64_t erase_tries,
                            bool mirror_h, bool mirror_v, py::object interpolation, py::object fill_obj,
                            py::object clip_obj, py::object out) {
  KeepAlive keep;
  const Call call = parse_call(x_obj, c_obj, h_obj, w_obj, interpolation, fill_obj, clip_obj, keep);
  ParamsDraw draw(call.n, seed, offset, same_on_batch, call.g.h, call.g.w, spec, erase_tries);
  draw.mirror_h = mirror_h;
  draw.mirror_v = mirror_v;
  const TensorView y = output_or_new(out, "out", call.x.dtype, shape_of(call.x));
  check_no_overlap(y, "out", call.x, "x");
  const int64_t h = call.g.h, w = call.g.w;
  py::gil_scoped_release release;
  const AugmentSampleSource samples = [&](int64_t i0, int64_t i1, AugmentSample* s) {
    for (int64_t i = i0; i < i1; i += 16) {
      AugmentRaw raw[16];
      const int64_t e = std::min<int64_t>(i + 16, i1);
      draw(i, e, raw);
      for (int64_t k = i; k < e; ++k) s[k - i0] = augment_sample(raw[k - i], h, w);
    }
  };
  dispatch(call.x.dtype, [&](auto t) {
    using T = decltype(t);
    augment_generated<T>(y.ptr<T>(), call.x.ptr<T>(), call.n, call.g, samples);
  });
  return out;
}

#endif

}  // namespace

void bind_augment(py::module_& m) {
#ifndef FDNN_CUDA_BINDINGS
  m.def("_augment_params_draw", &augment_params_draw_py, py::arg("n"), py::arg("seed"), py::arg("offset"),
        py::arg("same_on_batch"), py::arg("height"), py::arg("width"), py::arg("spec"), py::arg("erase_tries"));
#endif
  m.def("augment", &augment_py, py::arg("x"), py::arg("channels"), py::arg("height"), py::arg("width"),
        py::arg("params"), py::arg("interpolation"), py::arg("fill"), py::arg("clip"), py::arg("out"));
#ifndef FDNN_CUDA_BINDINGS
  // The same pass with the parameters drawn inside it (Compose on NumPy arrays): an overload, so
  // that a fused Compose call is still one call of the compiled augment.
  m.def("augment", &augment_drawn_py, py::arg("x"), py::arg("channels"), py::arg("height"), py::arg("width"),
        py::arg("seed"), py::arg("offset"), py::arg("same_on_batch"), py::arg("spec"), py::arg("erase_tries"),
        py::arg("mirror_h"), py::arg("mirror_v"), py::arg("interpolation"), py::arg("fill"), py::arg("clip"),
        py::arg("out"));
#endif
}

}  // namespace fdnn::bind
