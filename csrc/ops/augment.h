// Data augmentation: one pass over a batch of images (N, C, H, W) that applies to every sample its
// own affine map (rotation, zoom, shift, shear, flips; bilinear or nearest, with a fill value),
// brightness and contrast factors, additive Gaussian noise, optional clipping and a random-erasing
// rectangle. The per-sample parameters are drawn by the CPU module (bind_augment.cpp: as arrays for
// ops.augment_params, or block by block on the worker threads within Compose's one call); this
// header holds the per-pixel math both devices run. Plain C++ (no CUDA includes).
//
// Conventions (docs/data.md): pixel (row r, column c) has its center at (x, y) = (c, r); the
// affine map acts about the image center ((W - 1) / 2, (H - 1) / 2) as torchvision's
// F.affine does on tensors; the output pixel p takes the input at M p, M being the inverse map
// (flips folded in) that augment_sample() builds. M acts on coordinates relative to the center
// (augment_dx, augment_dy: exact in double), so the points it sends to integers exactly (the
// center under any map; every pixel under flips, integer shifts, and quarter turns when W - H is
// even, whose cosine and sine are exact: augment_cos_sin) come out exact whether or not a
// compiler fuses its multiply-adds. Order per sample: geometry, brightness, contrast (about the
// mean gray level of the result), noise, clip, erase.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

#include "common/box_muller.h"
#include "common/macros.h"
#include "common/philox.h"
#include "common/stream.h"

namespace fdnn {


// One sample's parameters as the kernels use them (built on the host by augment_sample()).
struct AugmentSample {
  double m[6];           // inverse map, (dx, dy) the pixel's offset from the image center:
                         // source x = m0 dx + (m1 dy + m2), source y = m3 dx + (m4 dy + m5)
  double brightness;     // factor (1: unchanged)
  double contrast;       // factor (1: unchanged)
  double noise_mean, noise_std;
  double erase_value;
  int64_t erase_top, erase_left, erase_height, erase_width;  // erase_height == 0: no erasing
  uint64_t noise_seed;   // Philox key of this sample's per-pixel noise
  int32_t identity_map;  // m is exactly the identity map (m2, m5 = cx, cy): the geometric step copies
  int32_t erase_random;  // erase with standard normal noise instead of erase_value
};

// The raw parameters of one sample (python: the dict that ops.augment_params returns).
struct AugmentRaw {
  double angle, translate_x, translate_y, scale, shear_x, shear_y;  // degrees, pixels, factor, degrees
  bool hflip, vflip;
  double brightness, contrast, noise_mean, noise_std, erase_value;
  bool erase, erase_random;
  int64_t erase_top, erase_left, erase_height, erase_width;
  uint64_t noise_seed;
};

// The cosine and sine of an angle given in degrees and in radians (as the caller rounded it):
// exactly 0 and +-1 at multiples of 90 degrees, where libm's cos(pi / 2) is 6.1e-17, so that a
// quarter turn sends pixel centers to pixel centers exactly; libm's values of `radians` otherwise.
inline void augment_cos_sin(double degrees, double radians, double& c, double& s) {
  const double quarters = degrees / 90.0;
  if (std::fabs(quarters) < 0x1p31 && std::floor(quarters) == quarters) {
    constexpr double kCos[4] = {1.0, 0.0, -1.0, 0.0}, kSin[4] = {0.0, 1.0, 0.0, -1.0};
    const int k = static_cast<int>(static_cast<int64_t>(quarters) & 3);  // -1 & 3 = 3: 270 degrees
    c = kCos[k];
    s = kSin[k];
  } else {
    c = std::cos(radians);
    s = std::sin(radians);
  }
}

// torchvision's _get_inverse_affine_matrix (center c, angle a clockwise on screen, translation t,
// scale s, shear (sx, sy)): M = C RSS^-1 C^-1 T^-1 with RSS = R(a) S(s) SHy(sy) SHx(sx); then
// the flips, applied to the input before the affine map, are folded in: x -> (W - 1) - x. M is
// kept as it acts on p - c: the linear part and (m2, m5) = c - RSS^-1 t, the source of the center.
// The cosine and sine of a multiple of 90 degrees are exact (augment_cos_sin).
inline AugmentSample augment_sample(const AugmentRaw& r, int64_t h, int64_t w) {
  const double deg = 0.017453292519943295769236907684886;  // pi / 180
  const double rot = r.angle * deg, sx = r.shear_x * deg, sy = r.shear_y * deg;
  const double cx = 0.5 * static_cast<double>(w - 1), cy = 0.5 * static_cast<double>(h - 1);
  // Each function value once (libm calls are most of a sample's setup); without shear, rot - sy is
  // rot (sy = +-0, rot != 0), cos(sy) = 1 and tan(sx) = sx: the same values without the calls.
  double cos_rs, sin_rs, cos_r, sin_r;
  augment_cos_sin(r.angle - r.shear_y, rot - sy, cos_rs, sin_rs);
  const double cos_sy = sy == 0.0 ? 1.0 : std::cos(sy), tan_sx = sx == 0.0 ? sx : std::tan(sx);
  if (sy == 0.0 && rot != 0.0) {
    cos_r = cos_rs;
    sin_r = sin_rs;
  } else {
    augment_cos_sin(r.angle, rot, cos_r, sin_r);
  }
  const double a = cos_rs / cos_sy;
  const double b = -cos_rs * tan_sx / cos_sy - sin_r;
  const double c = sin_rs / cos_sy;
  const double d = -sin_rs * tan_sx / cos_sy + cos_r;
  AugmentSample s{};
  double* m = s.m;
  m[0] = d / r.scale;
  m[1] = -b / r.scale;
  m[3] = -c / r.scale;
  m[4] = a / r.scale;
  const double ux = -r.translate_x, uy = -r.translate_y;
  m[2] = m[0] * ux + m[1] * uy + cx;
  m[5] = m[3] * ux + m[4] * uy + cy;
  if (r.hflip) {  // source x' = (W - 1) - x
    m[0] = -m[0];
    m[1] = -m[1];
    m[2] = static_cast<double>(w - 1) - m[2];
  }
  if (r.vflip) {
    m[3] = -m[3];
    m[4] = -m[4];
    m[5] = static_cast<double>(h - 1) - m[5];
  }
  s.identity_map = m[0] == 1.0 && m[1] == 0.0 && m[2] == cx && m[3] == 0.0 && m[4] == 1.0 && m[5] == cy;
  s.brightness = r.brightness;
  s.contrast = r.contrast;
  s.noise_mean = r.noise_mean;
  s.noise_std = r.noise_std;
  s.erase_value = r.erase_value;
  s.erase_random = r.erase_random;
  if (r.erase && r.erase_height > 0 && r.erase_width > 0 && r.erase_top < h && r.erase_left < w) {
    // A box starting outside the image erases nothing; extents are clamped to the image: the
    // same erased pixels (top, left >= 0), and top + height cannot overflow.
    s.erase_top = r.erase_top;
    s.erase_left = r.erase_left;
    s.erase_height = r.erase_height < h ? r.erase_height : h;
    s.erase_width = r.erase_width < w ? r.erase_width : w;
  }
  s.noise_seed = r.noise_seed;
  return s;
}

// The image geometry and the call's options.
struct AugmentShape {
  int64_t c, h, w;
  int nearest;          // 1: nearest neighbour, 0: bilinear
  double fill;          // the value of pixels outside the input
  int clip;             // 1: clamp to [clip_lo, clip_hi] after the noise
  double clip_lo, clip_hi;
  double gray_weight[3];  // contrast's gray level: luma weights for C == 3
};

// A pixel's column and row relative to the image center ((W - 1) / 2, (H - 1) / 2): the
// coordinates that AugmentSample::m acts on (exact: multiples of 1/2).
FDNN_HD inline double augment_dx(int64_t col, int64_t w) {
  return static_cast<double>(col) - 0.5 * static_cast<double>(w - 1);
}
FDNN_HD inline double augment_dy(int64_t row, int64_t h) {
  return static_cast<double>(row) - 0.5 * static_cast<double>(h - 1);
}

// Input value of channel plane `x` (H x W) at integer (col, row), or fill outside.
template <typename T>
FDNN_HD inline double augment_tap(const T* x, int64_t col, int64_t row, const AugmentShape& g) {
  if (col < 0 || row < 0 || col >= g.w || row >= g.h) return g.fill;
  return static_cast<double>(x[row * g.w + col]);
}

// Step 1 and 2 for output element (channel plane `plane`, row, col) of one sample: the geometric
// resampling of the plane, then the brightness factor. A tap whose weight is exactly 0 is not
// read, so integer source coordinates (identity, flips, integer shifts) copy bit for bit.
template <typename T>
FDNN_HD inline T augment_geometry(const T* plane, int64_t row, int64_t col, const AugmentSample& s,
                                  const AugmentShape& g) {
  T v;
  if (s.identity_map) {
    v = plane[row * g.w + col];
  } else {
    const double px = augment_dx(col, g.w), py = augment_dy(row, g.h);
    const double sx = s.m[0] * px + (s.m[1] * py + s.m[2]);
    const double sy = s.m[3] * px + (s.m[4] * py + s.m[5]);
    double out;
    if (g.nearest) {
      // Round half to even (as torch's grid_sample 'nearest' uses nearbyint).
      const double fx = rint(sx), fy = rint(sy);
      out = (fx >= -1.0 && fx <= static_cast<double>(g.w) && fy >= -1.0 && fy <= static_cast<double>(g.h))
                ? augment_tap(plane, static_cast<int64_t>(fx), static_cast<int64_t>(fy), g)
                : g.fill;
    } else if (!(sx > -1.0 && sx < static_cast<double>(g.w) && sy > -1.0 && sy < static_cast<double>(g.h))) {
      out = g.fill;  // all four taps outside (NaN coordinates too)
    } else {
      const double x0 = floor(sx), y0 = floor(sy);
      const double wx = sx - x0, wy = sy - y0;
      const int64_t c0 = static_cast<int64_t>(x0), r0 = static_cast<int64_t>(y0);
      const double t00 = augment_tap(plane, c0, r0, g);
      const double top = wx == 0.0 ? t00 : (1.0 - wx) * t00 + wx * augment_tap(plane, c0 + 1, r0, g);
      if (wy == 0.0) {
        out = top;
      } else {
        const double t10 = augment_tap(plane, c0, r0 + 1, g);
        const double bottom = wx == 0.0 ? t10 : (1.0 - wx) * t10 + wx * augment_tap(plane, c0 + 1, r0 + 1, g);
        out = (1.0 - wy) * top + wy * bottom;
      }
    }
    v = static_cast<T>(out);
  }
  if (s.brightness != 1.0) v = static_cast<T>(static_cast<double>(v) * s.brightness);
  return v;
}

// The weight of element e (of C*H*W) in the sample's mean gray level: luma weights / (H W) for
// three channels, 1 / (C H W) otherwise.
FDNN_HD inline double augment_gray_weight(int64_t e, const AugmentShape& g) {
  const int64_t hw = g.h * g.w;
  if (g.c == 3) return g.gray_weight[e / hw] / static_cast<double>(hw);
  return 1.0 / static_cast<double>(g.c * hw);
}

// Standard normals of elements 4j .. 4j+3 of the stream (key, offset): Box-Muller on the word
// pairs (0, 1) and (2, 3) of Philox block j, as ops.gaussian_noise maps them (Z = float for
// float32 images, double for float64, as gaussian_noise computes them).
template <typename Z> FDNN_HD inline void augment_normals(uint64_t key, uint64_t offset, int64_t j, Z z[4]) {
  const PhiloxStream stream(key, offset);
  uint32_t r0, r1, r2, r3;
  stream.block(static_cast<uint64_t>(j), r0, r1, r2, r3);
  box_muller(r0, r1, z[0], z[1]);
  box_muller(r2, r3, z[2], z[3]);
}

// Offsets of the two per-pixel streams of a sample (key noise_seed).
constexpr uint64_t kAugmentNoiseOffset = 0;
constexpr uint64_t kAugmentEraseOffset = 1;

// Steps 3 to 6 on elements 4j .. min(4j + 4, count) of one sample's output y (count = C H W),
// in place: contrast about `gray_mean`, noise, clip, erase.
template <typename T>
FDNN_HD inline void augment_finish_quad(T* y, int64_t j, int64_t count, const AugmentSample& s, const AugmentShape& g,
                                        double gray_mean) {
  const int64_t e0 = 4 * j;
  const int64_t m = count - e0 < 4 ? count - e0 : 4;
  T z[4] = {0, 0, 0, 0};
  const bool noise = s.noise_std != 0.0 || s.noise_mean != 0.0;
  if (noise) augment_normals(s.noise_seed, kAugmentNoiseOffset, j, z);
  bool erase_any = false;
  bool erased[4] = {false, false, false, false};
  if (s.erase_height > 0) {
    const int64_t hw = g.h * g.w;
    for (int k = 0; k < m; ++k) {
      const int64_t pix = (e0 + k) % hw, row = pix / g.w, col = pix % g.w;
      erased[k] = row >= s.erase_top && row < s.erase_top + s.erase_height && col >= s.erase_left &&
                  col < s.erase_left + s.erase_width;
      erase_any = erase_any || erased[k];
    }
  }
  T ze[4] = {0, 0, 0, 0};
  if (erase_any && s.erase_random) augment_normals(s.noise_seed, kAugmentEraseOffset, j, ze);
  for (int k = 0; k < m; ++k) {
    T& out = y[e0 + k];
    if (erased[k]) {
      out = s.erase_random ? ze[k] : static_cast<T>(s.erase_value);
      continue;
    }
    T v = out;
    if (s.contrast != 1.0)
      v = static_cast<T>(s.contrast * static_cast<double>(v) + (1.0 - s.contrast) * gray_mean);
    if (noise) v = static_cast<T>(static_cast<double>(v) + (s.noise_mean + s.noise_std * z[k]));
    if (g.clip) {
      const double d = static_cast<double>(v);
      if (d < g.clip_lo) v = static_cast<T>(g.clip_lo);
      if (d > g.clip_hi) v = static_cast<T>(g.clip_hi);
    }
    out = v;
  }
}

// Whether steps 3 to 6 change anything for this sample.
FDNN_HD inline bool augment_needs_finish(const AugmentSample& s, const AugmentShape& g) {
  return s.contrast != 1.0 || s.noise_std != 0.0 || s.noise_mean != 0.0 || g.clip || s.erase_height > 0;
}

// y (N, C, H, W) from x (the same shape, not overlapping y); samples: N host structs.
template <typename T>
void augment(T* y, const T* x, int64_t n, const AugmentShape& shape, const AugmentSample* samples, Stream stream);

// CPU only (augment_cpu.cpp): augment with the samples made on the worker threads, block by
// block: samples(i0, i1, out) writes samples i0 .. i1 - 1 to out[0 .. i1 - i0) (each a function of
// its index only, so the result does not depend on the thread count); i0 is a multiple of 16.
using AugmentSampleSource = std::function<void(int64_t i0, int64_t i1, AugmentSample* out)>;
template <typename T>
void augment_generated(T* y, const T* x, int64_t n, const AugmentShape& shape, const AugmentSampleSource& samples);

// The explicit instantiations that both devices' files (augment_cpu.cpp, augment_cuda.cu) emit.
#define FDNN_AUGMENT_INSTANTIATE(T) \
  template void augment<T>(T*, const T*, int64_t, const AugmentShape&, const AugmentSample*, Stream);

}  // namespace fdnn
