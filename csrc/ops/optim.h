// Optimizer update rules, one element at a time, shared by the CPU and CUDA builds, and the CPU
// entry points. The order of operations follows torch.optim's single-tensor implementations.
// Each rule first applies grad_scale (fused gradient clipping) and maximize.
//
// Hyperparameters arrive in a struct of T values precomputed on the host (bias corrections,
// the decayed Adagrad rate, NAdam's momentum coefficients: the functions below compute them in
// double, once per call, for both devices), so the per-element code is plain arithmetic that
// vectorizes. Math calls are std:: so that float stays float (a bare sqrt(float) is the C
// library's double sqrt).
//
// Every kernel declared here takes the call's Stream last (common/stream.h); the CPU ignores it.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/macros.h"
#include "common/stream.h"

namespace fdnn {

template <typename T> struct GradPrep {
  T scale;        // multiplies the gradient first (1 without clipping)
  bool maximize;  // negate the gradient
  FDNN_HD T operator()(T g) const { return maximize ? -(g * scale) : g * scale; }
};

// torch.lerp(a, b, w): a + w (b - a) for |w| < 0.5, else b - (b - a)(1 - w) (so that w = 1
// gives b exactly); the branch depends only on w, chosen once on the host.
template <typename T> struct Lerp {
  T w, w_c;  // w and 1 - w (in T)
  bool from_end;
  FDNN_HD T operator()(T a, T b) const { return from_end ? b - (b - a) * w_c : a + w * (b - a); }
};
template <typename T> inline Lerp<T> make_lerp(double w) {
  const T wt = static_cast<T>(w);
  return {wt, T(1) - wt, !(std::fabs(w) < 0.5)};
}

// ---- SGD (momentum, dampening, Nesterov, coupled weight decay)
template <typename T> struct SgdHyper {
  GradPrep<T> prep;
  T lr, momentum, dampening_c /* 1 - dampening */, weight_decay;
  bool nesterov, first_step, use_momentum;
};
template <typename T> FDNN_HD inline void sgd_update(T& p, T g, T* buf, const SgdHyper<T>& h) {
  g = h.prep(g);
  if (h.weight_decay != T(0)) g = g + h.weight_decay * p;
  if (h.use_momentum) {
    const T old = *buf;  // read unconditionally, so that the CPU loop vectorizes
    const T b = h.first_step ? g : old * h.momentum + h.dampening_c * g;
    *buf = b;
    g = h.nesterov ? g + h.momentum * b : b;
  }
  p = p - h.lr * g;
}

// ---- Adagrad: clr = lr / (1 + (step - 1) lr_decay) is computed on the host.
template <typename T> struct AdagradHyper {
  GradPrep<T> prep;
  T clr, weight_decay, eps;
};
template <typename T> FDNN_HD inline void adagrad_update(T& p, T g, T& sum, const AdagradHyper<T>& h) {
  g = h.prep(g);
  if (h.weight_decay != T(0)) g = g + h.weight_decay * p;
  sum = sum + g * g;
  p = p - h.clr * (g / (std::sqrt(sum) + h.eps));
}

// ---- RMSprop (centered, momentum). Centered, the variance estimate v = square_avg - grad_avg^2
// (>= 0 in exact arithmetic) is taken as 0 where v < 4 eps(T) square_avg, i.e. negative or
// within the rounding error of square_avg: alpha = 0 gives g*g - g*g, which a fused multiply-add
// leaves as the rounding error of g*g, of either sign. So the square root never sees a negative
// value (torch's unclamped one gives NaN) and every evaluation order (CPU with or without FMA,
// GPU, the NumPy reference) takes the same one. NaN stays NaN, +inf stays +inf.
template <typename T> struct RmspropHyper {
  GradPrep<T> prep;
  T lr, alpha, alpha_c /* 1 - alpha */, eps, weight_decay, momentum;
  bool centered, use_momentum;
  Lerp<T> avg_lerp;  // lerp weight 1 - alpha
  T var_floor = T(4) * std::numeric_limits<T>::epsilon();  // set on the host
};
template <typename T>
FDNN_HD inline void rmsprop_update(T& p, T g, T& square_avg, T* grad_avg, T* buf, const RmspropHyper<T>& h) {
  g = h.prep(g);
  if (h.weight_decay != T(0)) g = g + h.weight_decay * p;
  square_avg = square_avg * h.alpha + h.alpha_c * g * g;
  T avg;
  if (h.centered) {
    const T a = h.avg_lerp(*grad_avg, g);
    *grad_avg = a;
    const T var = square_avg - a * a;
    avg = std::sqrt(var < h.var_floor * square_avg ? T(0) : var) + h.eps;
  } else {
    avg = std::sqrt(square_avg) + h.eps;
  }
  if (h.use_momentum) {
    const T b = *buf * h.momentum + g / avg;
    *buf = b;
    p = p - h.lr * b;
  } else {
    p = p - h.lr * (g / avg);
  }
}

// ---- Adadelta
template <typename T> struct AdadeltaHyper {
  GradPrep<T> prep;
  T lr, rho, rho_c /* 1 - rho */, eps, weight_decay;
};
template <typename T>
FDNN_HD inline void adadelta_update(T& p, T g, T& square_avg, T& acc_delta, const AdadeltaHyper<T>& h) {
  g = h.prep(g);
  if (h.weight_decay != T(0)) g = g + h.weight_decay * p;
  square_avg = square_avg * h.rho + h.rho_c * g * g;
  const T delta = std::sqrt(acc_delta + h.eps) / std::sqrt(square_avg + h.eps) * g;
  acc_delta = acc_delta * h.rho + h.rho_c * delta * delta;
  p = p - h.lr * delta;
}

// ---- Adam / AdamW (decoupled weight decay) / AMSGrad.
// step_size = lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t) (torch divides by it): see
// adam_bias_correction below.
template <typename T> struct AdamHyper {
  GradPrep<T> prep;
  T beta2, beta2_c /* 1 - beta2 */, eps, weight_decay, decay_factor /* 1 - lr wd */;
  T step_size, bc2_sqrt;
  bool decoupled;
  Lerp<T> m_lerp;  // lerp weight 1 - beta1
};
// Adam's bias corrections at step t (from 1), in double on the host.
struct AdamBiasCorrection {
  double step_size;  // lr / (1 - beta1^t)
  double bc2_sqrt;   // sqrt(1 - beta2^t)
};
FDNN_HD inline AdamBiasCorrection adam_bias_correction(int64_t step, double lr, double beta1, double beta2) {
  const double t = static_cast<double>(step);
  return {lr / (1.0 - std::pow(beta1, t)), std::sqrt(1.0 - std::pow(beta2, t))};
}
template <typename T>
inline AdamHyper<T> adam_hyper(GradPrep<T> prep, int64_t step, double lr, double beta1, double beta2, double eps,
                               double weight_decay, bool decoupled) {
  const AdamBiasCorrection bc = adam_bias_correction(step, lr, beta1, beta2);
  return {prep, T(beta2), T(1.0 - beta2), T(eps), T(weight_decay), T(1.0 - lr * weight_decay),
          T(bc.step_size), T(bc.bc2_sqrt), decoupled, make_lerp<T>(1.0 - beta1)};
}

template <typename T>
FDNN_HD inline void adam_update(T& p, T g, T& m, T& v, T* vmax, const AdamHyper<T>& h) {
  g = h.prep(g);
  if (h.decoupled)
    p = p * h.decay_factor;
  else if (h.weight_decay != T(0))
    g = g + h.weight_decay * p;
  m = h.m_lerp(m, g);
  v = v * h.beta2 + h.beta2_c * g * g;
  T second = v;
  if (vmax) {
    second = *vmax > v ? *vmax : v;
    *vmax = second;
  }
  const T denom = std::sqrt(second) / h.bc2_sqrt + h.eps;
  p = p - h.step_size * (m / denom);
}

// ---- NAdam: c_grad = lr (1 - mu_t) / (1 - prod mu), c_avg = lr mu_{t+1} / (1 - prod mu * mu_{t+1})
// (see nadam_coefficients below).
template <typename T> struct NadamHyper {
  GradPrep<T> prep;
  T beta2, beta2_c, eps, weight_decay, decay_factor, bias_correction2, c_grad, c_avg;
  bool decoupled;
  Lerp<T> m_lerp;
};
// NAdam's momentum schedule: mu_t = beta1 (1 - 0.5 * 0.96^(t psi)), psi = momentum_decay.
FDNN_HD inline double nadam_mu(double beta1, double momentum_decay, double t) {
  return beta1 * (1.0 - 0.5 * std::pow(0.96, t * momentum_decay));
}
// The constants of NAdam's step t (from 1) given prod_{s<t} mu_s (1 before the first step), in
// double on the host; `product` is the new prod_{s<=t} mu_s that the caller keeps.
struct NadamCoefficients {
  double product, c_grad, c_avg, bias_correction2;
};
FDNN_HD inline NadamCoefficients nadam_coefficients(int64_t step, double mu_product, double lr, double beta1,
                                                    double beta2, double momentum_decay) {
  const double t = static_cast<double>(step);
  const double mu = nadam_mu(beta1, momentum_decay, t), mu_next = nadam_mu(beta1, momentum_decay, t + 1.0);
  const double product = mu_product * mu;
  return {product, lr * (1.0 - mu) / (1.0 - product), lr * mu_next / (1.0 - product * mu_next),
          1.0 - std::pow(beta2, t)};
}
template <typename T>
inline NadamHyper<T> nadam_hyper(GradPrep<T> prep, const NadamCoefficients& c, double lr, double beta1, double beta2,
                                 double eps, double weight_decay, bool decoupled) {
  return {prep, T(beta2), T(1.0 - beta2), T(eps), T(weight_decay), T(1.0 - lr * weight_decay),
          T(c.bias_correction2), T(c.c_grad), T(c.c_avg), decoupled, make_lerp<T>(1.0 - beta1)};
}

template <typename T> FDNN_HD inline void nadam_update(T& p, T g, T& m, T& v, const NadamHyper<T>& h) {
  g = h.prep(g);
  if (h.decoupled)
    p = p * h.decay_factor;
  else if (h.weight_decay != T(0))
    g = g + h.weight_decay * p;
  m = h.m_lerp(m, g);
  v = v * h.beta2 + h.beta2_c * g * g;
  const T denom = std::sqrt(v / h.bias_correction2) + h.eps;
  p = p - h.c_grad * (g / denom);
  p = p - h.c_avg * (m / denom);
}

// A list of same-dtype arrays updated together (a flat buffer is a list of one). The state
// lists are empty when the rule does not use that state.
template <typename T> struct OptimArrays {
  std::vector<int64_t> sizes;
  std::vector<T*> params;
  std::vector<const T*> grads;
  std::vector<T*> state0, state1, state2;
};

// state0 = momentum buffer
template <typename T> void sgd_step(const OptimArrays<T>& a, const SgdHyper<T>& h, Stream stream);
// state0 = sum
template <typename T> void adagrad_step(const OptimArrays<T>& a, const AdagradHyper<T>& h, Stream stream);
// state0 = square_avg, state1 = grad_avg (centered), state2 = momentum buffer
template <typename T> void rmsprop_step(const OptimArrays<T>& a, const RmspropHyper<T>& h, Stream stream);
// state0 = square_avg, state1 = acc_delta
template <typename T> void adadelta_step(const OptimArrays<T>& a, const AdadeltaHyper<T>& h, Stream stream);
// state0 = exp_avg, state1 = exp_avg_sq, state2 = max_exp_avg_sq (amsgrad)
template <typename T> void adam_step(const OptimArrays<T>& a, const AdamHyper<T>& h, Stream stream);
// state0 = exp_avg, state1 = exp_avg_sq
template <typename T> void nadam_step(const OptimArrays<T>& a, const NadamHyper<T>& h, Stream stream);

// ---- Elastic-net penalty (L1 + L2), added to a gradient in one pass
// g += l1 sign(w), then g += l2 w (in that order, as L1 then L2 in fusednn.regularizers);
// |w| and w^2 are added to the caller's sums (double) for the penalty l1 sum|w| + l2/2 sum w^2.
template <typename T> FDNN_HD inline void penalty_update(T w, T& g, T l1, T l2, double& abs_sum, double& sq_sum) {
  const T sign = w > T(0) ? T(1) : (w < T(0) ? T(-1) : T(0));
  g = g + l1 * sign;
  g = g + l2 * w;
  const double wd = static_cast<double>(w);
  abs_sum += wd < 0 ? -wd : wd;
  sq_sum += wd * wd;
}

// The penalty's gradient added to grads on the entries where mask != 0 (mask null: all);
// returns the penalty of those entries, its sums accumulated in double over a fixed partition.
template <typename T>
double add_penalty_grad(const T* params, T* grads, const uint8_t* mask, int64_t n, double l1, double l2,
                        Stream stream);

// Norm of all arrays together: 2 (sqrt of the sum of squares, accumulated in double over a
// fixed partition) or infinity (max |x|); NaN if any element is NaN.
template <typename T> double grad_norm(const std::vector<const T*>& arrays, const std::vector<int64_t>& sizes,
                                       bool infinity_norm, Stream stream);
// Clamps every element into [lo, hi] (lo <= hi; NaN stays NaN).
template <typename T>
void clip_by_value(const std::vector<T*>& arrays, const std::vector<int64_t>& sizes, T lo, T hi, Stream stream);
template <typename T>
void scale_in_place(const std::vector<T*>& arrays, const std::vector<int64_t>& sizes, T factor, Stream stream);

// The explicit instantiations that both devices' files (optim_cpu.cpp, optim_cuda.cu) emit.
#define FDNN_OPTIM_INSTANTIATE(T)                                                                                   \
  template void sgd_step<T>(const OptimArrays<T>&, const SgdHyper<T>&, Stream);                                       \
  template void adagrad_step<T>(const OptimArrays<T>&, const AdagradHyper<T>&, Stream);                               \
  template void rmsprop_step<T>(const OptimArrays<T>&, const RmspropHyper<T>&, Stream);                               \
  template void adadelta_step<T>(const OptimArrays<T>&, const AdadeltaHyper<T>&, Stream);                             \
  template void adam_step<T>(const OptimArrays<T>&, const AdamHyper<T>&, Stream);                                     \
  template void nadam_step<T>(const OptimArrays<T>&, const NadamHyper<T>&, Stream);                                   \
  template double grad_norm<T>(const std::vector<const T*>&, const std::vector<int64_t>&, bool, Stream);      \
  template double add_penalty_grad<T>(const T*, T*, const uint8_t*, int64_t, double, double, Stream);         \
  template void clip_by_value<T>(const std::vector<T*>&, const std::vector<int64_t>&, T, T, Stream);          \
  template void scale_in_place<T>(const std::vector<T*>&, const std::vector<int64_t>&, T, Stream);

}  // namespace fdnn
