// CPU augmentation: the samples are split into fixed blocks (depending only on the sizes) spread
// over the thread pool; each sample is computed by one thread in element order (its contrast mean
// too), so the output does not depend on the thread count.
#include <algorithm>

#include "common/isa.h"
#include "common/parallel.h"
#include "ops/augment.h"

namespace fdnn {
namespace {

template <typename T>
FDNN_MULTIVERSION void augment_one(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, const AugmentShape& g,
                                   const AugmentSample& s) {
  const int64_t hw = g.h * g.w, count = g.c * hw;
  const bool contrast = s.contrast != 1.0;
  double gray = 0.0;
  for (int64_t c = 0; c < g.c; ++c) {
    const T* plane = x + c * hw;
    T* out = y + c * hw;
    if (s.identity_map && s.brightness == 1.0) {
      std::copy(plane, plane + hw, out);
    } else {
      for (int64_t row = 0; row < g.h; ++row)
        for (int64_t col = 0; col < g.w; ++col) out[row * g.w + col] = augment_geometry(plane, row, col, s, g);
    }
    if (contrast) {
      double plane_sum = 0.0;
      for (int64_t i = 0; i < hw; ++i) plane_sum += static_cast<double>(out[i]);
      gray += plane_sum * augment_gray_weight(c * hw, g);
    }
  }
  if (!augment_needs_finish(s, g)) return;
  for (int64_t j = 0; j < (count + 3) / 4; ++j) augment_finish_quad(y, j, count, s, g, gray);
}

}  // namespace

template <typename T>
void augment(T* y, const T* x, int64_t n, const AugmentShape& shape, const AugmentSample* samples, Stream) {
  const int64_t count = shape.c * shape.h * shape.w;
  if (count == 0) return;
  // About 16K elements per block of samples.
  const int64_t block = std::max<int64_t>(1, (16 * 1024) / count);
  parallel_for(n, block, count * 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) augment_one(y + i * count, x + i * count, shape, samples[i]);
  });
}

FDNN_AUGMENT_INSTANTIATE(float)
FDNN_AUGMENT_INSTANTIATE(double)

}  // namespace fdnn
