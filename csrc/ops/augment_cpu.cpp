// CPU augmentation: the samples are split into fixed blocks (depending only on the sizes) spread
// over the thread pool; each sample is computed by one thread in a fixed order (its contrast mean
// in 8 interleaved partial sums, plane_sum_in_double), so the output does not depend on the
// thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/avx512_paths.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/philox_avx2.h"
#include "cpu/philox_avx512.h"
#include "ops/augment.h"

namespace fdnn {

#if defined(__x86_64__)
template <typename T>
int64_t augment_bilinear_row_avx512(T* out, const T* plane, int64_t row, const AugmentSample& s,
                                    const AugmentShape& g);  // augment_avx512_cpu.cpp
template <typename T>
int64_t augment_nearest_row_avx512(T* out, const T* plane, int64_t row, const AugmentSample& s,
                                   const AugmentShape& g);
int64_t augment_bilinear_f64_avx512(double* y, const double* x, const AugmentSample& s, const AugmentShape& g);
void augment_nearest_f32_avx512(float* y, const float* x, const AugmentSample& s, const AugmentShape& g);
void augment_bilinear_f32_avx512(float* y, const float* x, const AugmentSample& s, const AugmentShape& g,
                                 float* pad, const double* coords, int64_t border_max, bool quad_planes,
                                 int64_t* layout);
#endif

namespace {

constexpr int kNoiseChunk = 64;  // elements whose Philox words (16 blocks) are drawn together

#if defined(__x86_64__)
// On CPUs with AVX-512F: the Philox rounds of cpu/philox_avx512.h, as dropout uses them (GCC's own
// lowering of the 16-lane loop below uses 64-bit lane products, vpmullq), and the bilinear rows
// of augment_avx512_cpu.cpp.
const bool kAugmentAvx512 = avx512_paths_enabled();
// Elsewhere with AVX2: the Philox rounds of cpu/philox_avx2.h (brightness and noise over
// 512x1x28x28 float32 on one Zen 3 core: 1.5-1.6 ms against 2.2-2.4 with the loop below's
// x86-64-v3 clone, 2026-12-07).
const bool kAugmentAvx2 = avx2_paths_enabled();
#endif

// y[e] += mean + std * z_e for e in [0, count): the words of 16 Philox blocks at a time (a loop
// over lanes that vectorizes), then Box-Muller on them (polynomials, vectorized; in T's precision,
// common/box_muller.h), then the update.
template <typename T>
FDNN_MULTIVERSION void add_noise(T* FDNN_RESTRICT y, int64_t count, uint64_t key, double mean, double std) {
  const PhiloxStream stream(key, kAugmentNoiseOffset);
  alignas(64) uint32_t w0[16], w1[16], w2[16], w3[16];
  alignas(64) T a0[16], a1[16], b0[16], b1[16], z[kNoiseChunk];  // float normals for float32
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float>) {
    if (kAugmentAvx512) {  // float32: normals and update in registers (cpu/philox_avx512.h)
      add_normals_f32_avx512(y, y, count, stream.k0, stream.k1, stream.o0, stream.o1, 0, 1.0, mean, std);
      return;
    }
  }
#endif
  for (int64_t e0 = 0; e0 < count; e0 += kNoiseChunk) {
    const uint64_t j0 = static_cast<uint64_t>(e0 / 4);
#if defined(__x86_64__)
    if (kAugmentAvx512 || kAugmentAvx2) {
      alignas(64) uint32_t c[64];
      for (int l = 0; l < 16; ++l) {
        c[l] = static_cast<uint32_t>(j0 + l);
        c[16 + l] = static_cast<uint32_t>((j0 + l) >> 32);
        c[32 + l] = stream.o0;
        c[48 + l] = stream.o1;
      }
      if (kAugmentAvx512) {
        philox_rounds_avx512(c, stream.k0, stream.k1);
      } else {
        philox_rounds_avx2(c, stream.k0, stream.k1);
      }
      std::memcpy(w0, c, sizeof(w0));
      std::memcpy(w1, c + 16, sizeof(w1));
      std::memcpy(w2, c + 32, sizeof(w2));
      std::memcpy(w3, c + 48, sizeof(w3));
    } else
#endif
    {
#pragma omp simd
      for (int l = 0; l < 16; ++l) {
        uint32_t c0 = static_cast<uint32_t>(j0 + l), c1 = static_cast<uint32_t>((j0 + l) >> 32), c2 = stream.o0,
                 c3 = stream.o1;
        philox4x32_10(c0, c1, c2, c3, stream.k0, stream.k1);
        w0[l] = c0;
        w1[l] = c1;
        w2[l] = c2;
        w3[l] = c3;
      }
    }
#pragma omp simd
    for (int l = 0; l < 16; ++l) {
      box_muller(w0[l], w1[l], a0[l], a1[l]);
      box_muller(w2[l], w3[l], b0[l], b1[l]);
    }
    for (int l = 0; l < 16; ++l) {  // element 4l + t uses word t of block l
      z[4 * l] = a0[l];
      z[4 * l + 1] = a1[l];
      z[4 * l + 2] = b0[l];
      z[4 * l + 3] = b1[l];
    }
    const int64_t m = std::min<int64_t>(kNoiseChunk, count - e0);
    T* out = y + e0;
#pragma omp simd
    for (int64_t k = 0; k < m; ++k) out[k] = static_cast<T>(static_cast<double>(out[k]) + (mean + std * z[k]));
  }
}

// One output row of a bilinear plane (augment_geometry's arithmetic; on AVX-512F CPUs all but the
// last W mod 8 columns come from augment_avx512_cpu.cpp): taps are read at indices clamped into
// the image, a tap of weight
// exactly 0 does not contribute (so integer coordinates copy, NaN neighbours included), and a
// point whose four taps are all outside is `fill`.
template <typename T>
FDNN_MULTIVERSION void bilinear_row(T* FDNN_RESTRICT out, const T* FDNN_RESTRICT plane, int64_t row,
                                    const AugmentSample& s, const AugmentShape& g, int64_t done = -1) {
  const double py = augment_dy(row, g.h), w = static_cast<double>(g.w), h = static_cast<double>(g.h);
  const double fill = g.fill;
  const int64_t width = g.w, height = g.h;
  const double a = s.m[1] * py + s.m[2], b = s.m[4] * py + s.m[5];
  int64_t start = done < 0 ? 0 : done;
#if defined(__x86_64__)
  if (done < 0 && kAugmentAvx512 && g.h * g.w < (int64_t{1} << 31))
    start = augment_bilinear_row_avx512(out, plane, row, s, g);
#endif
#pragma omp simd
  for (int64_t col = start; col < width; ++col) {
    const double px = augment_dx(col, g.w);
    const double sx = s.m[0] * px + a;
    const double sy = s.m[3] * px + b;
    const bool ok = sx > -1.0 && sx < w && sy > -1.0 && sy < h;
    const double x0 = floor(ok ? sx : 0.0), y0 = floor(ok ? sy : 0.0);
    const double wx = (ok ? sx : 0.0) - x0, wy = (ok ? sy : 0.0) - y0;
    const int64_t c0 = static_cast<int64_t>(x0), r0 = static_cast<int64_t>(y0);
    const bool in_c0 = c0 >= 0, in_c1 = c0 + 1 < width, in_r0 = r0 >= 0, in_r1 = r0 + 1 < height;
    // Indices clamped into the image, so that every gather is in bounds; outside taps are fill.
    const int64_t ca = std::max<int64_t>(c0, 0), cb = std::min<int64_t>(c0 + 1, width - 1);
    const int64_t ra = std::max<int64_t>(r0, 0) * width, rb = std::min<int64_t>(r0 + 1, height - 1) * width;
    const double v00 = static_cast<double>(plane[ra + ca]), v01 = static_cast<double>(plane[ra + cb]);
    const double v10 = static_cast<double>(plane[rb + ca]), v11 = static_cast<double>(plane[rb + cb]);
    const double t00 = in_c0 && in_r0 ? v00 : fill, t01 = in_c1 && in_r0 ? v01 : fill;
    const double t10 = in_c0 && in_r1 ? v10 : fill, t11 = in_c1 && in_r1 ? v11 : fill;
    const double top = wx == 0.0 ? t00 : (1.0 - wx) * t00 + wx * t01;
    const double bottom = wx == 0.0 ? t10 : (1.0 - wx) * t10 + wx * t11;
    const double v = wy == 0.0 ? top : (1.0 - wy) * top + wy * bottom;
    out[col] = static_cast<T>(ok ? v : fill);
  }
  if (s.brightness != 1.0) {
    const double brightness = s.brightness;
#pragma omp simd
    for (int64_t col = done < 0 ? 0 : done; col < width; ++col)
      out[col] = static_cast<T>(static_cast<double>(out[col]) * brightness);
  }
}

// Whether float32 bilinear samples take augment_bilinear_f32_avx512 (padded planes of fewer than
// 2^24 pixels, int32 indices with room to spare; larger planes take bilinear_row).
bool bilinear_f32_fast(const AugmentShape& g) {
#if defined(__x86_64__)
  return kAugmentAvx512 && !g.nearest && (g.h + 2) * (g.w + 2) < (int64_t{1} << 24);
#else
  return false;
#endif
}

// The widest border of fill around augment_bilinear_f32_avx512's padded planes: a quarter of the
// image's larger side plus 8 (rotations of +-15 degrees and zooms to 0.9 at 28x28 need up to ~10),
// while the padded plane keeps fewer than 2^24 pixels; 1 otherwise.
int64_t bilinear_f32_border_max(const AugmentShape& g) {
  const int64_t b = std::max(g.h, g.w) / 4 + 8;
  return (g.h + 2 * b) * (g.w + 2 * b) < (int64_t{1} << 24) ? b : 1;
}

// The padded planes of augment_bilinear_f32_avx512 that a thread keeps between blocks and calls
// (up to kKeptPadFloats floats; larger ones are allocated per block): `layout` is the border of
// fill they hold now (0: none) for images of C x H x W whose fill has the bits `fill_bits`.
constexpr int64_t kKeptPadFloats = int64_t{1} << 20;

// Whether augment_bilinear_f32_avx512 writes quad planes (several channels: twice the floats of
// plain planes) rather than one padded plane per channel: only while the quad planes fit in the
// kept planes, so that a block's own planes for a larger image stay C (H + 2 b) (W + 2 b) floats.
bool bilinear_f32_quads(const AugmentShape& g) {
  const int64_t b = bilinear_f32_border_max(g);
  return g.c > 1 && 2 * g.c * (g.h + 2 * b) * (g.w + 2 * b) <= kKeptPadFloats;
}
struct KeptPad {
  std::vector<float> planes;
  int64_t c = 0, h = 0, w = 0, layout = 0;
  uint64_t fill_bits = 0;
};
thread_local KeptPad kept_pad;

// Columns, then rows (augment_dx, augment_dy: relative to the image center), of pixels
// 0 .. H W + 15 of an H x W image, each group of 16 as its pixels
// A then its pixels B (augment_avx512_cpu.cpp's weights16); the pixels past the image repeat the
// last one, so the lanes of a last partial group (computed, not stored) read taps within the
// padded plane. The table of augment_bilinear_f32_avx512's flat path (W not a multiple of 16),
// kept by the calling thread for the next call of the same size.
void fill_flat_coords(std::vector<double>& coords, int64_t h, int64_t w) {
  const int64_t hw = h * w;
  coords.assign(static_cast<size_t>(2 * (hw + 16)), 0.0);
  for (int64_t p = 0; p < hw + 16; ++p) {
    const int64_t j = p % 16, in_group = j < 8 ? 4 * (j / 2) + j % 2 : 4 * ((j - 8) / 2) + 2 + j % 2;
    const int64_t q = std::min(p - j + in_group, hw - 1);
    coords[static_cast<size_t>(p)] = augment_dx(q % w, w);
    coords[static_cast<size_t>(hw + 16 + p)] = augment_dy(q / w, h);
  }
}

// The calling thread keeps the table of images up to kKeptCoordPixels pixels (4 MB) between
// calls; a larger image's table is built into `own` for the call and freed with it.
constexpr int64_t kKeptCoordPixels = int64_t{1} << 18;
const double* flat_coords(int64_t h, int64_t w, std::vector<double>& own) {
  if (h * w > kKeptCoordPixels) {
    fill_flat_coords(own, h, w);
    return own.data();
  }
  struct Table {
    int64_t h = 0, w = 0;
    std::vector<double> coords;
  };
  thread_local Table table;
  if (table.h != h || table.w != w) {
    fill_flat_coords(table.coords, h, w);
    table.h = h;
    table.w = w;
  }
  return table.coords.data();
}

// The sum of n values in double, in 8 interleaved partial sums (element i into sum i % 8) added in
// a fixed order: the same bits on every ISA path and thread count, and a vector loop (one running
// sum was bound by the addition's latency: ColorJitter(contrast=0.2) alone on 512x1x28x28 took
// 0.47 ms of one-thread CPU time against 0.11 ms for brightness, Zen 4).
template <typename T> double plane_sum_in_double(const T* FDNN_RESTRICT v, int64_t n) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += static_cast<double>(v[i + k]);
  for (int k = 0; i < n; ++i, ++k) part[k] += static_cast<double>(v[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// The source column of output column 0 (row: of row 0) under a map with m0 = +-1 and m1 = 0 (m4,
// m3): m0 (0 - cx) + m2, exact where it is an integer below 2^40 (cx a multiple of 1/2).
inline double source_of_first_col(const AugmentSample& s, int64_t w) { return s.m[0] * augment_dx(0, w) + s.m[2]; }
inline double source_of_first_row(const AugmentSample& s, int64_t h) { return s.m[4] * augment_dy(0, h) + s.m[5]; }

// Whether the map sends every pixel to an integer source point along the axes: flips and integer
// shifts (m1 = m3 = 0, m0 and m4 = +-1, the source of pixel (0, 0) integers below 2^40).
// Bilinear and nearest sampling both copy such a map's source pixels (their taps of weight 0 are
// not read) and give fill where the point is outside, so integer_map_planes gives their bits
// without resampling.
inline bool integer_axis_map(const AugmentSample& s, const AugmentShape& g) {
  const auto unit = [](double v) { return v == 1.0 || v == -1.0; };
  const auto whole = [](double v) { return std::fabs(v) < 0x1p40 && v == std::floor(v); };
  return s.m[1] == 0.0 && s.m[3] == 0.0 && unit(s.m[0]) && unit(s.m[4]) && whole(source_of_first_col(s, g.w)) &&
         whole(source_of_first_row(s, g.h));
}

// Every plane of one sample under an integer_axis_map: output pixel (row, col) is input pixel
// (m4 row + sy0, m0 col + sx0), (sx0, sy0) the source of pixel (0, 0), or fill outside the image,
// times brightness: in float where the sample would have taken augment_bilinear_f32_avx512
// (`float_brightness`, its blend's multiply), otherwise in double as bilinear_row and
// augment_geometry. A flip of a 28x28 plane is a reversed row copy instead of a bilinear pass
// (one-thread Compose of RandomHorizontalFlip(0.5) alone on 512x1x28x28: 0.44 -> 0.11 ms on Zen 4).
template <typename T>
void integer_map_planes(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, const AugmentSample& s, const AugmentShape& g,
                        bool float_brightness) {
  const int64_t H = g.h, W = g.w, hw = H * W;
  const int64_t dx = s.m[0] > 0.0 ? 1 : -1, dy = s.m[4] > 0.0 ? 1 : -1;
  const int64_t sx0 = static_cast<int64_t>(source_of_first_col(s, W));
  const int64_t sy0 = static_cast<int64_t>(source_of_first_row(s, H));
  const double brightness = s.brightness;
  const float brightness_f = static_cast<float>(brightness);
  const auto bright = [&](T v) -> T {
    if (brightness == 1.0) return v;
    if constexpr (std::is_same_v<T, float>)
      if (float_brightness) return v * brightness_f;
    return static_cast<T>(static_cast<double>(v) * brightness);
  };
  const T fill = bright(static_cast<T>(g.fill));
  // Columns [lo, hi) read the image (source column dx col + sx0 in [0, W)).
  const int64_t lo = std::clamp<int64_t>(dx > 0 ? -sx0 : sx0 - (W - 1), 0, W);
  const int64_t hi = std::clamp<int64_t>(dx > 0 ? W - sx0 : sx0 + 1, lo, W);
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t row = 0; row < H; ++row) {
      T* out = y + c * hw + row * W;
      const int64_t sy = dy * row + sy0;
      if (sy < 0 || sy >= H) {
        std::fill(out, out + W, fill);
        continue;
      }
      const T* in = x + c * hw + sy * W;
      std::fill(out, out + lo, fill);
      if (dx > 0)
        for (int64_t col = lo; col < hi; ++col) out[col] = bright(in[sx0 + col]);
      else
        for (int64_t col = lo; col < hi; ++col) out[col] = bright(in[sx0 - col]);
      std::fill(out + hi, out + W, fill);
    }
}

#if defined(__x86_64__)
// Columns [c0, c1) of rows [ra, rb) of plane c (float32, AVX-512F) get the erase stream's normals
// (element e: word e % 4 of block e / 4, as augment_normals): drawn in registers
// (cpu/philox_avx512.h, the same bits) over the span from the first of those elements to the
// last, 256 at a time from a block boundary, each chunk's erased parts copied.
void erase_rows_with_normals(float* y, const PhiloxStream& stream, const AugmentShape& g, int64_t c, int64_t ra,
                             int64_t rb, int64_t c0, int64_t c1) {
  const int64_t hw = g.h * g.w;
  const int64_t first = c * hw + ra * g.w + c0, last = c * hw + (rb - 1) * g.w + c1;
  alignas(64) float z[256];
  int64_t row = ra;
  for (int64_t e = first / 4 * 4; e < last; e += 256) {
    const int64_t m = std::min<int64_t>(256, last - e);
    normals_f32_avx512(z, m, stream.k0, stream.k1, stream.o0, stream.o1, static_cast<uint64_t>(e / 4));
    for (; row < rb; ++row) {  // the erased rows' parts within elements [e, e + m)
      const int64_t rs = c * hw + row * g.w + c0, re = rs + (c1 - c0);
      const int64_t from = std::max(rs, e), to = std::min(re, e + m);
      if (from < to) std::copy(z + (from - e), z + (to - e), y + from);
      if (re > e + m) break;  // the row goes on in the next chunk
    }
  }
}
#endif

// One sample, in the order of augment_finish_quad (augment.h): geometry and brightness with the
// gray sum, then contrast, noise and clipping as whole-sample loops, then the erased rectangle.
// `pad`: room for C padded planes of (H + 2 b) x (W + 2 b) floats, twice that for quad planes
// (bilinear_f32_quads; b = bilinear_f32_border_max),
// `layout` the border its planes have now (0: none yet), when bilinear_f32_fast (float32), null
// otherwise; `coords`: flat_coords(H, W) when bilinear_f32_fast and W is not a multiple of 16.
template <typename T>
FDNN_MULTIVERSION void augment_one(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, const AugmentShape& g,
                                   const AugmentSample& s, float* pad, const double* coords, int64_t* layout) {
  const int64_t hw = g.h * g.w, count = g.c * hw;
  const bool contrast = s.contrast != 1.0;
  double gray = 0.0;
  const bool noise = s.noise_std != 0.0 || s.noise_mean != 0.0;
  bool geometry_done = false, noise_done = false;
  int64_t bilinear_done = -1;  // >= 0: columns [0, bilinear_done) of every row already resampled
  if (!s.identity_map && integer_axis_map(s, g)) {
    integer_map_planes(y, x, s, g, pad != nullptr);
    geometry_done = true;
  }
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float>) {
    if (geometry_done) {
    } else if (kAugmentAvx512 && s.identity_map && noise && !contrast) {
      // The photometric path in one pass: y = x brightness + noise, in float (cpu/philox_avx512.h).
      const PhiloxStream stream(s.noise_seed, kAugmentNoiseOffset);
      add_normals_f32_avx512(y, x, count, stream.k0, stream.k1, stream.o0, stream.o1, 0, s.brightness, s.noise_mean,
                             s.noise_std);
      geometry_done = noise_done = true;
    } else if (kAugmentAvx512 && !s.identity_map && g.nearest && hw < (int64_t{1} << 31)) {
      augment_nearest_f32_avx512(y, x, s, g);  // nearest: every plane at once
      geometry_done = true;
    } else if (!s.identity_map && pad != nullptr) {
      augment_bilinear_f32_avx512(y, x, s, g, pad, coords, bilinear_f32_border_max(g), bilinear_f32_quads(g),
                                  layout);
      geometry_done = true;
    }
  } else if constexpr (std::is_same_v<T, double>) {
    if (!geometry_done && kAugmentAvx512 && !s.identity_map && !g.nearest && g.c > 1 && hw < (int64_t{1} << 31)) {
      // Bilinear, several planes: the columns below 8 floor(W / 8) of every plane at once, the
      // rest by bilinear_row. (One plane stays with bilinear_row: this way measured 1.57 -> 2.24 ms
      // of one-thread CPU time on RandomShift(0.1) of 512x1x28x28, Zen 4.)
      bilinear_done = augment_bilinear_f64_avx512(y, x, s, g);
    }
  }
#endif
  for (int64_t c = 0; c < g.c; ++c) {
    const T* plane = x + c * hw;
    T* out = y + c * hw;
    if (geometry_done) {
    } else if (s.identity_map && s.brightness == 1.0) {
      std::copy(plane, plane + hw, out);
    } else if (s.identity_map) {
      const double brightness = s.brightness;
#pragma omp simd
      for (int64_t i = 0; i < hw; ++i) out[i] = static_cast<T>(static_cast<double>(plane[i]) * brightness);
    } else if (!s.identity_map && !g.nearest) {
      for (int64_t row = 0; row < g.h; ++row) bilinear_row(out + row * g.w, plane, row, s, g, bilinear_done);
    } else {  // nearest
      for (int64_t row = 0; row < g.h; ++row) {
        int64_t start = 0;
#if defined(__x86_64__)
        if constexpr (std::is_same_v<T, double>) {  // float32 took augment_nearest_f32_avx512 above
          if (kAugmentAvx512 && hw < (int64_t{1} << 31)) {
            start = augment_nearest_row_avx512(out + row * g.w, plane, row, s, g);
            if (s.brightness != 1.0)
              for (int64_t col = 0; col < start; ++col)
                out[row * g.w + col] = static_cast<T>(static_cast<double>(out[row * g.w + col]) * s.brightness);
          }
        }
#endif
        for (int64_t col = start; col < g.w; ++col) out[row * g.w + col] = augment_geometry(plane, row, col, s, g);
      }
    }
    if (contrast) {
      gray += plane_sum_in_double(out, hw) * augment_gray_weight(c * hw, g);
    }
  }
  if (contrast) {
    const double factor = s.contrast, shift = (1.0 - s.contrast) * gray;
#pragma omp simd
    for (int64_t e = 0; e < count; ++e) y[e] = static_cast<T>(factor * static_cast<double>(y[e]) + shift);
  }
  if (noise && !noise_done) add_noise(y, count, s.noise_seed, s.noise_mean, s.noise_std);
  if (g.clip) {
    // augment_finish_quad's clamp (NaN stays) as selects, which vectorize: the two conditional
    // stores it is written with did not, and cost 1.5-5.5 ns an element on Zen 4 (their branches
    // mispredicted wherever values lie on both sides of a bound).
    const double lo = g.clip_lo, hi = g.clip_hi;
    const T lo_t = static_cast<T>(lo), hi_t = static_cast<T>(hi);
#pragma omp simd
    for (int64_t e = 0; e < count; ++e) {
      const double d = static_cast<double>(y[e]);
      y[e] = d < lo ? lo_t : (d > hi ? hi_t : y[e]);
    }
  }
  if (s.erase_height > 0) {
    const int64_t r0 = std::max<int64_t>(s.erase_top, 0), r1 = std::min<int64_t>(s.erase_top + s.erase_height, g.h);
    const int64_t c0 = std::max<int64_t>(s.erase_left, 0), c1 = std::min<int64_t>(s.erase_left + s.erase_width, g.w);
    const T value = static_cast<T>(s.erase_value);
    bool normals_done = false;
#if defined(__x86_64__)
    if constexpr (std::is_same_v<T, float>) {
      if (kAugmentAvx512 && s.erase_random) {
        // Rows not much narrower than the image: one span per plane, its rows and what lies
        // between (per row, each span draws at least 8 blocks: one-thread CPU time above a
        // constant erase value, Zen 4: ~3.4 ns an erased pixel on 512x1x28x28 with
        // RandomErasing(1.0)'s ~12-pixel rows, ~2.2 ns this way; 256x3x32x32 3.0 -> 2.1); else
        // one span per row.
        const PhiloxStream stream(s.noise_seed, kAugmentEraseOffset);
        const bool whole_planes = g.w <= c1 - c0 + 64;
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t row = r0; row < r1; row = whole_planes ? r1 : row + 1)
            erase_rows_with_normals(y, stream, g, c, row, whole_planes ? r1 : row + 1, c0, c1);
        normals_done = true;
      }
    }
#endif
    for (int64_t c = 0; c < (normals_done ? 0 : g.c); ++c)
      for (int64_t row = r0; row < r1; ++row) {
        T* out = y + c * hw + row * g.w;
        if (!s.erase_random) {
          for (int64_t col = c0; col < c1; ++col) out[col] = value;
          continue;
        }
        // Element e takes word e % 4 of block e / 4's normals: one block's four for up to four
        // neighbours (drawing the block for each element: 2.0 against 1.07 ms of one-thread CPU
        // time for a Compose erasing every 512x1x28x28 sample with value="random", Zen 4).
        T z[4];
        int64_t block = -1;
        for (int64_t col = c0; col < c1; ++col) {
          const int64_t e = c * hw + row * g.w + col;
          if (e / 4 != block) {
            block = e / 4;
            augment_normals(s.noise_seed, kAugmentEraseOffset, block, z);
          }
          out[col] = z[e % 4];
        }
      }
  }
}

// Samples per block of augment and augment_generated: about 16K elements, and where that is 16
// samples or more a multiple of 16 (the parameter draw's groups of 16 samples, bind_augment.cpp;
// a block starting inside a group draws that group's blocks too). Large images get blocks of
// fewer samples, down to 1, so that a batch of 16 224x224 images is not one block on one thread.
int64_t samples_per_block(int64_t count) {
  const int64_t samples = std::max<int64_t>(1, (16 * 1024) / count);
  return samples < 16 ? samples : samples / 16 * 16;
}

// The loop of augment and augment_generated: blocks of `block` samples (at least about 16K
// elements each) on the thread pool; `samples(b, e, local)` gives samples b .. e - 1 (local: room
// for e - b, which it may fill and return, or ignore and return its own array's).
template <typename T, class Samples>
void augment_loop(T* y, const T* x, int64_t n, const AugmentShape& shape, int64_t block, Samples&& samples) {
  const int64_t count = shape.c * shape.h * shape.w;
  const bool fast = std::is_same_v<T, float> && bilinear_f32_fast(shape);
  const int64_t hw = shape.h * shape.w;
  std::vector<double> own_coords;
  const double* coords = fast && shape.w % 16 != 0 ? flat_coords(shape.h, shape.w, own_coords) : nullptr;
  const int64_t border = fast ? bilinear_f32_border_max(shape) : 0;
  const int64_t pad_size =  // augment_bilinear_f32_avx512's planes (quad planes: twice the floats)
      fast ? (bilinear_f32_quads(shape) ? 2 : 1) * shape.c * (shape.h + 2 * border) * (shape.w + 2 * border) : 0;
  parallel_for(n, block, count * 8, [&](int64_t b, int64_t e) {
    std::vector<float> own;
    float* pad = nullptr;
    int64_t own_layout = 0;
    int64_t* layout = &own_layout;
    if (fast) {
      if (pad_size <= kKeptPadFloats) {
        // The thread's kept planes: their border of fill is reused from one block (and call) to
        // the next while the geometry and the fill's bits stay the same.
        KeptPad& kept = kept_pad;
        uint64_t fill_bits;
        std::memcpy(&fill_bits, &shape.fill, sizeof(fill_bits));
        if (kept.c != shape.c || kept.h != shape.h || kept.w != shape.w || kept.fill_bits != fill_bits) {
          kept.c = shape.c;
          kept.h = shape.h;
          kept.w = shape.w;
          kept.fill_bits = fill_bits;
          kept.layout = 0;
        }
        if (static_cast<int64_t>(kept.planes.size()) < pad_size) {
          kept.planes.resize(static_cast<size_t>(pad_size));
          kept.layout = 0;
        }
        pad = kept.planes.data();
        layout = &kept.layout;
      } else {
        own.resize(static_cast<size_t>(pad_size));
        pad = own.data();
      }
    }
    std::vector<AugmentSample> local;
    const AugmentSample* s = samples(b, e, local);
    for (int64_t i = b; i < e; ++i)
      augment_one(y + i * count, x + i * count, shape, s[i - b], pad, coords, layout);
  });
}

}  // namespace

template <typename T>
void augment(T* y, const T* x, int64_t n, const AugmentShape& shape, const AugmentSample* samples, Stream) {
  const int64_t count = shape.c * shape.h * shape.w;
  if (count == 0) return;
  augment_loop(y, x, n, shape, samples_per_block(count),
               [&](int64_t b, int64_t, std::vector<AugmentSample>&) { return samples + b; });
}

template <typename T>
void augment_generated(T* y, const T* x, int64_t n, const AugmentShape& shape, const AugmentSampleSource& samples) {
  const int64_t count = shape.c * shape.h * shape.w;
  if (count == 0) return;
  augment_loop(y, x, n, shape, samples_per_block(count),
               [&](int64_t b, int64_t e, std::vector<AugmentSample>& local) {
                 local.resize(static_cast<size_t>(e - b));
                 samples(b, e, local.data());
                 return static_cast<const AugmentSample*>(local.data());
               });
}

template void augment_generated<float>(float*, const float*, int64_t, const AugmentShape&,
                                       const AugmentSampleSource&);
template void augment_generated<double>(double*, const double*, int64_t, const AugmentShape&,
                                        const AugmentSampleSource&);

FDNN_AUGMENT_INSTANTIATE(float)
FDNN_AUGMENT_INSTANTIATE(double)

}  // namespace fdnn
