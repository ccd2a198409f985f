// The activations that kernels fuse into their epilogues (linear, batch and layer norm,
// dropout), shared by the CPU and CUDA builds. Plain C++ (no CUDA includes).
#pragma once

#include "common/macros.h"

namespace fdnn {

enum class Activation { none = 0, relu = 1 };

// NaN stays NaN, as in torch.relu and np.maximum(v, 0).
template <typename T> FDNN_HD inline T relu(T v) { return v < T(0) ? T(0) : v; }

template <typename T> FDNN_HD inline T activate(T v, bool apply_relu) { return apply_relu ? relu(v) : v; }

// Gradient of relu given its output: passes where the output is positive (torch's convention:
// zero at the kink). A select, not a product, so an infinite dy where y <= 0 gives 0.
template <typename T> FDNN_HD inline T relu_grad_from_output(T dy, T y) { return y > T(0) ? dy : T(0); }

}  // namespace fdnn
