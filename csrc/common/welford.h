// Mean and sum of squared deviations (M2) of a set, merged from the statistics of its parts
// (Chan, Golub, LeVeque 1979). Merging parts in a fixed order gives results that do not depend
// on which thread computed which part, and the M2 form keeps the variance accurate when the
// mean is large compared to the spread.
#pragma once

#include "common/macros.h"

namespace fdnn {

struct MeanM2 {
  double count = 0, mean = 0, m2 = 0;
};

FDNN_HD inline MeanM2 merge(MeanM2 a, MeanM2 b) {
  const double count = a.count + b.count;
  if (count == 0) return a;
  const double delta = b.mean - a.mean;
  const double wb = b.count / count;
  return {count, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

}  // namespace fdnn
