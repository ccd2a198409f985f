// Bindings of the optimizer updates, gradient norms and clipping. Hyperparameters are checked
// in Python (fusednn/_checks.py, shared with the Optimizer classes); here: the arrays (one
// memory-overlap check over all the lists of a call, also used by the Optimizer classes through
// check_disjoint), and the hyperparameters handed to the rules of ops/optim.h.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bind/array.h"
#include "bind/bind.h"
#include "ops/optim.h"

namespace fdnn::bind {
namespace {

// An array or a list/tuple of arrays, as a list.
std::vector<py::handle> as_list(py::handle obj, const char* name) {
  if (is_array(obj)) return {obj};
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj))
    throw TypeError(std::string(name) + ": expected an array or a list of arrays, got " + type_name(obj));
  std::vector<py::handle> out;
  for (py::handle h : obj) out.push_back(h);
  return out;
}

// "name[i]" in a stack buffer: built for every array of every call, so no heap allocation.
class ItemName {
 public:
  ItemName(const char* name, size_t i) {
    char digits[24];
    int nd = 0;
    do {
      digits[nd++] = static_cast<char>('0' + i % 10);
      i /= 10;
    } while (i);
    size_t k = 0;
    while (name[k] && k < sizeof(buf_) - nd - 3) buf_[k] = name[k], ++k;
    buf_[k++] = '[';
    while (nd) buf_[k++] = digits[--nd];
    buf_[k++] = ']';
    buf_[k] = '\0';
  }
  const char* c_str() const { return buf_; }

 private:
  char buf_[64];
};

ItemName item_name(const char* name, size_t i) { return ItemName(name, i); }

// ---- Memory overlap across all the arrays of a call.
// Arrays written in place must not overlap each other or any array the call reads; arrays that
// are only read may overlap each other. One sort of the byte ranges and one sweep: O(n log n).

struct Region {
  uintptr_t lo = 0, hi = 0;  // the bytes [lo, hi) the array spans
  bool written = false;
  int list = 0;  // the position of its list among the call's arguments (for the message's order)
  size_t index = 0;
  const char* name = "";  // the list's name
};

Region region_of(const TensorView& t, const char* name, int list, size_t index, bool written) {
  int64_t first = 0, last = 0;  // byte offsets of the lowest and highest element
  for (int i = 0; i < t.ndim; ++i) {
    const int64_t span = (t.shape[i] - 1) * t.strides[i] * t.itemsize();
    (span < 0 ? first : last) += span;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(t.data);
  return {base + static_cast<uintptr_t>(first), base + static_cast<uintptr_t>(last + t.itemsize()), written, list,
          index, name};
}

// The regions of a list of views (empty arrays span nothing and are left out).
void add_regions(std::vector<Region>& out, const std::vector<TensorView>& views, const char* name, int list,
                 bool written) {
  for (size_t i = 0; i < views.size(); ++i)
    if (views[i].data != nullptr && views[i].numel() > 0) out.push_back(region_of(views[i], name, list, i, written));
}

[[noreturn]] void overlap_error(const Region& a, const Region& b) {
  // Name the written one first; of two written ones, the later argument.
  const bool a_first = a.written != b.written ? a.written : (a.list != b.list ? a.list > b.list : a.index > b.index);
  const Region& first = a_first ? a : b;
  const Region& second = a_first ? b : a;
  const std::string n1 = std::string(first.name) + "[" + std::to_string(first.index) + "]";
  const std::string n2 = std::string(second.name) + "[" + std::to_string(second.index) + "]";
  throw ValueError(n1 + ": must not share memory with " + n2 +
                   (second.written ? " (both are written in place)"
                                   : " (the kernel reads " + n2 + " while it writes " + n1 + ")"));
}

void check_disjoint(std::vector<Region>& regions) {
  std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) {
    return a.lo != b.lo ? a.lo < b.lo : (a.list != b.list ? a.list < b.list : a.index < b.index);
  });
  // Of the regions that start before the current one: the one reaching furthest, and the
  // written one reaching furthest. A region overlaps an earlier one iff it starts below that reach.
  const Region* reach = nullptr;
  const Region* reach_written = nullptr;
  for (const Region& r : regions) {
    if (r.written && reach && reach->hi > r.lo) overlap_error(*reach, r);
    if (!r.written && reach_written && reach_written->hi > r.lo) overlap_error(*reach_written, r);
    if (!reach || r.hi > reach->hi) reach = &r;
    if (r.written && (!reach_written || r.hi > reach_written->hi)) reach_written = &r;
  }
}

// Parameters, gradients and states of one update call, checked.
struct Lists {
  DType dtype = DType::float32;
  std::vector<int64_t> sizes;
  std::vector<TensorView> params, grads;
  std::vector<std::vector<TensorView>> states;  // one list per state (empty when None)
  KeepAlive keep;
};

Lists collect(py::handle params_obj, py::handle grads_obj,
              std::initializer_list<std::pair<py::handle, const char*>> states) {
  Lists l;
  const std::vector<py::handle> params = as_list(params_obj, "params");
  const std::vector<py::handle> grads = as_list(grads_obj, "grads");
  if (grads.size() != params.size())
    throw ValueError("grads: expected " + std::to_string(params.size()) + " arrays (one per parameter), got " +
                     std::to_string(grads.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const ItemName pname = item_name("params", i);
    if (i == 0) {
      KeepAlive probe;  // the dtype of params[0] is the dtype of the call
      l.dtype = input_array(params[0], pname.c_str(), probe).dtype;
    }
    const std::vector<int64_t> shape = is_array(params[i]) ? array_shape(params[i]) : std::vector<int64_t>{};
    l.params.push_back(output_array(params[i], pname.c_str(), l.dtype, shape));
    const TensorView& p = l.params.back();
    l.sizes.push_back(p.numel());
    const ItemName gname = item_name("grads", i);
    l.grads.push_back(input_array(grads[i], gname.c_str(), l.keep));
    check_same_dtype(l.grads.back(), gname.c_str(), l.dtype, pname.c_str());
    check_same_shape(l.grads.back(), gname.c_str(), p, pname.c_str());
  }
  std::vector<Region> regions;
  add_regions(regions, l.params, "params", 0, true);
  add_regions(regions, l.grads, "grads", 1, false);
  int list = 2;
  for (const auto& [obj, name] : states) {
    l.states.emplace_back();
    if (obj.is_none()) continue;
    const std::vector<py::handle> items = as_list(obj, name);
    if (items.size() != params.size())
      throw ValueError(std::string(name) + ": expected " + std::to_string(params.size()) +
                       " arrays (one per parameter), got " + std::to_string(items.size()));
    for (size_t i = 0; i < items.size(); ++i) {
      const ItemName sname = item_name(name, i);
      l.states.back().push_back(output_array(items[i], sname.c_str(), l.dtype, shape_of(l.params[i])));
    }
    add_regions(regions, l.states.back(), name, list++, true);
  }
  check_disjoint(regions);
  return l;
}

template <typename T> std::vector<T*> pointers(const std::vector<TensorView>& views) {
  std::vector<T*> out;
  for (const TensorView& v : views) out.push_back(v.ptr<T>());
  return out;
}

template <typename T> OptimArrays<T> arrays_of(const Lists& l) {
  OptimArrays<T> a;
  a.sizes = l.sizes;
  a.params = pointers<T>(l.params);
  for (T* g : pointers<T>(l.grads)) a.grads.push_back(g);
  std::vector<T*>* slots[3] = {&a.state0, &a.state1, &a.state2};
  for (size_t s = 0; s < l.states.size() && s < 3; ++s) *slots[s] = pointers<T>(l.states[s]);
  return a;
}

template <typename T> GradPrep<T> prep(double grad_scale, bool maximize) {
  return {static_cast<T>(grad_scale), maximize};
}

// Runs f(OptimArrays<T>, T-tag) for the call's dtype with the GIL released.
template <typename F> void run(const Lists& l, F&& f) {
  py::gil_scoped_release release;
  dispatch(l.dtype, [&](auto t) {
    using T = decltype(t);
    f(arrays_of<T>(l), t);
  });
}

void sgd_py(py::object params, py::object grads, py::object bufs, double lr, double momentum, double dampening,
            bool nesterov, double weight_decay, bool maximize, bool first_step, double grad_scale) {
  const Stream stream = call_stream();
  const Lists l = collect(params, grads, {{bufs, "momentum_buffers"}});
  if (momentum != 0.0 && l.states[0].empty() && !l.params.empty())
    throw ValueError("momentum_buffers: required when momentum > 0, got None");
  run(l, [&](const auto& a, auto t) {
    using T = decltype(t);
    const SgdHyper<T> h{prep<T>(grad_scale, maximize), T(lr), T(momentum), T(1.0 - dampening), T(weight_decay),
                        nesterov, first_step, momentum != 0.0};
    sgd_step<T>(a, h, stream);
  });
}

void adagrad_py(py::object params, py::object grads, py::object sums, int64_t step, double lr, double lr_decay,
                double weight_decay, double eps, bool maximize, double grad_scale) {
  const Stream stream = call_stream();
  const Lists l = collect(params, grads, {{sums, "state_sums"}});
  if (l.states[0].empty() && !l.params.empty()) throw ValueError("state_sums: expected arrays, got None");
  const double clr = lr / (1.0 + static_cast<double>(step - 1) * lr_decay);
  run(l, [&](const auto& a, auto t) {
    using T = decltype(t);
    adagrad_step<T>(a, AdagradHyper<T>{prep<T>(grad_scale, maximize), T(clr), T(weight_decay), T(eps)}, stream);
  });
}

void rmsprop_py(py::object params, py::object grads, py::object square_avgs, py::object bufs, py::object grad_avgs,
                double lr, double alpha, double eps, double weight_decay, double momentum, bool centered,
                bool maximize, double grad_scale) {
  const Stream stream = call_stream();
  // state order in the kernel: square_avg, grad_avg, momentum buffer
  const Lists l =
      collect(params, grads, {{square_avgs, "square_avgs"}, {grad_avgs, "grad_avgs"}, {bufs, "momentum_buffers"}});
  if (!l.params.empty()) {
    if (l.states[0].empty()) throw ValueError("square_avgs: expected arrays, got None");
    if (centered && l.states[1].empty()) throw ValueError("grad_avgs: required when centered=True, got None");
    if (momentum != 0.0 && l.states[2].empty())
      throw ValueError("momentum_buffers: required when momentum > 0, got None");
  }
  run(l, [&](const auto& a, auto t) {
    using T = decltype(t);
    rmsprop_step<T>(a,
                    RmspropHyper<T>{prep<T>(grad_scale, maximize), T(lr), T(alpha), T(1.0 - alpha), T(eps),
                                    T(weight_decay), T(momentum), centered, momentum != 0.0, make_lerp<T>(1.0 - alpha)},
                    stream);
  });
}

void adadelta_py(py::object params, py::object grads, py::object square_avgs, py::object acc_deltas, double lr,
                 double rho, double eps, double weight_decay, bool maximize, double grad_scale) {
  const Stream stream = call_stream();
  const Lists l = collect(params, grads, {{square_avgs, "square_avgs"}, {acc_deltas, "acc_deltas"}});
  if (!l.params.empty() && (l.states[0].empty() || l.states[1].empty()))
    throw ValueError(std::string(l.states[0].empty() ? "square_avgs" : "acc_deltas") + ": expected arrays, got None");
  run(l, [&](const auto& a, auto t) {
    using T = decltype(t);
    adadelta_step<T>(a,
                     AdadeltaHyper<T>{prep<T>(grad_scale, maximize), T(lr), T(rho), T(1.0 - rho), T(eps),
                                      T(weight_decay)},
                     stream);
  });
}

void adam_py(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
             py::object max_exp_avg_sqs, int64_t step, double lr, double beta1, double beta2, double eps,
             double weight_decay, bool amsgrad, bool decoupled, bool maximize, double grad_scale) {
  const Stream stream = call_stream();
  const Lists l = collect(params, grads,
                          {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}, {max_exp_avg_sqs, "max_exp_avg_sqs"}});
  if (!l.params.empty()) {
    if (l.states[0].empty() || l.states[1].empty())
      throw ValueError(std::string(l.states[0].empty() ? "exp_avgs" : "exp_avg_sqs") + ": expected arrays, got None");
    if (amsgrad && l.states[2].empty())
      throw ValueError("max_exp_avg_sqs: required when amsgrad=True, got None");
  }
  run(l, [&](const auto& a, auto t) {
    using T = decltype(t);
    OptimArrays<T> arrays = a;
    if (!amsgrad) arrays.state2.clear();
    adam_step<T>(arrays,
                 adam_hyper<T>(prep<T>(grad_scale, maximize), step, lr, beta1, beta2, eps, weight_decay, decoupled),
                 stream);
  });
}

double nadam_py(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs, int64_t step,
                double mu_product, double lr, double beta1, double beta2, double eps, double weight_decay,
                double momentum_decay, bool decoupled, bool maximize, double grad_scale) {
  const Stream stream = call_stream();
  const Lists l = collect(params, grads, {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  if (!l.params.empty() && (l.states[0].empty() || l.states[1].empty()))
    throw ValueError(std::string(l.states[0].empty() ? "exp_avgs" : "exp_avg_sqs") + ": expected arrays, got None");
  const NadamCoefficients c = nadam_coefficients(step, mu_product, lr, beta1, beta2, momentum_decay);
  run(l, [&](const auto& a, auto t) {
    using T = decltype(t);
    nadam_step<T>(a, nadam_hyper<T>(prep<T>(grad_scale, maximize), c, lr, beta1, beta2, eps, weight_decay, decoupled),
                  stream);
  });
  return c.product;
}

// Arrays read (norm) or written in place (clipping, scaling): one dtype, any shapes; arrays
// written in place must not overlap each other.
struct Flat {
  DType dtype = DType::float32;
  std::vector<TensorView> views;
  std::vector<int64_t> sizes;
  KeepAlive keep;
};
Flat flat_list(py::handle obj, const char* name, bool in_place) {
  Flat f;
  const std::vector<py::handle> items = as_list(obj, name);
  for (size_t i = 0; i < items.size(); ++i) {
    const ItemName n = item_name(name, i);
    TensorView v = input_array(items[i], n.c_str(), f.keep);
    if (i == 0) f.dtype = v.dtype;
    check_same_dtype(v, n.c_str(), f.dtype, item_name(name, 0).c_str());
    if (in_place) v = output_array(items[i], n.c_str(), f.dtype, shape_of(v));
    f.views.push_back(v);
    f.sizes.push_back(v.numel());
  }
  if (in_place) {
    std::vector<Region> regions;
    add_regions(regions, f.views, name, 0, true);
    check_disjoint(regions);
  }
  return f;
}

double grad_norm_py(py::object grads, bool infinity) {
  const Stream stream = call_stream();
  Flat f = flat_list(grads, "grads", false);
  double norm = 0.0;
  py::gil_scoped_release release;
  dispatch(f.dtype, [&](auto t) {
    using T = decltype(t);
    std::vector<const T*> ptrs;
    for (const TensorView& v : f.views) ptrs.push_back(v.ptr<T>());
    norm = grad_norm<T>(ptrs, f.sizes, infinity, stream);
  });
  return norm;
}

// grads += the elastic-net gradient of params (where mask), returning the penalty.
double add_penalty_grad_py(py::object params_obj, py::object grads_obj, double l1, double l2, py::object mask_obj) {
  const Stream stream = call_stream();
  KeepAlive keep;
  const TensorView w = input_array(params_obj, "params", keep);
  const TensorView g = output_array(grads_obj, "grads", w.dtype, shape_of(w));
  check_no_overlap(g, "grads", w, "params");
  const uint8_t* mask = mask_obj.is_none() ? nullptr : bool_array(mask_obj, "mask", shape_of(w), keep);
  double total = 0.0;
  py::gil_scoped_release release;
  dispatch(w.dtype, [&](auto t) {
    using T = decltype(t);
    total = add_penalty_grad<T>(w.ptr<T>(), g.ptr<T>(), mask, w.numel(), l1, l2, stream);
  });
  return total;
}

// Clamps into [lo, hi]: the Python layer checks the bounds (real, not NaN, lo <= hi).
void clip_value_py(py::object grads, double lo, double hi) {
  const Stream stream = call_stream();
  Flat f = flat_list(grads, "grads", true);
  py::gil_scoped_release release;
  dispatch(f.dtype, [&](auto t) {
    using T = decltype(t);
    clip_by_value<T>(pointers<T>(f.views), f.sizes, static_cast<T>(lo), static_cast<T>(hi), stream);
  });
}

void scale_py(py::object arrays, double factor) {
  const Stream stream = call_stream();
  Flat f = flat_list(arrays, "arrays", true);
  py::gil_scoped_release release;
  dispatch(f.dtype, [&](auto t) {
    using T = decltype(t);
    scale_in_place<T>(pointers<T>(f.views), f.sizes, static_cast<T>(factor), stream);
  });
}

// The Optimizer classes' check of their parameters (arrays of any float dtype, all updated in
// place): ValueError naming the two entries of `name` that share memory.
void check_disjoint_py(py::object arrays, const std::string& name) {
  const std::vector<py::handle> items = as_list(arrays, name.c_str());
  std::vector<TensorView> views;
  for (size_t i = 0; i < items.size(); ++i) {
    const ItemName n = item_name(name.c_str(), i);
    KeepAlive probe;
    const DType dtype = input_array(items[i], n.c_str(), probe).dtype;
    views.push_back(output_array(items[i], n.c_str(), dtype, array_shape(items[i])));
  }
  std::vector<Region> regions;
  add_regions(regions, views, name.c_str(), 0, true);
  check_disjoint(regions);
}

}  // namespace

void bind_optim(py::module_& m) {
  using py::arg;
  m.def("add_penalty_grad", &add_penalty_grad_py, arg("params"), arg("grads"), arg("l1"), arg("l2"), arg("mask"));
  m.def("sgd_step", &sgd_py, arg("params"), arg("grads"), arg("momentum_buffers"), arg("lr"), arg("momentum"),
        arg("dampening"), arg("nesterov"), arg("weight_decay"), arg("maximize"), arg("first_step"), arg("grad_scale"));
  m.def("adagrad_step", &adagrad_py, arg("params"), arg("grads"), arg("state_sums"), arg("step"), arg("lr"),
        arg("lr_decay"), arg("weight_decay"), arg("eps"), arg("maximize"), arg("grad_scale"));
  m.def("rmsprop_step", &rmsprop_py, arg("params"), arg("grads"), arg("square_avgs"), arg("momentum_buffers"),
        arg("grad_avgs"), arg("lr"), arg("alpha"), arg("eps"), arg("weight_decay"), arg("momentum"), arg("centered"),
        arg("maximize"), arg("grad_scale"));
  m.def("adadelta_step", &adadelta_py, arg("params"), arg("grads"), arg("square_avgs"), arg("acc_deltas"), arg("lr"),
        arg("rho"), arg("eps"), arg("weight_decay"), arg("maximize"), arg("grad_scale"));
  m.def("adam_step", &adam_py, arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"),
        arg("max_exp_avg_sqs"), arg("step"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"),
        arg("amsgrad"), arg("decoupled_weight_decay"), arg("maximize"), arg("grad_scale"));
  m.def("nadam_step", &nadam_py, arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("step"),
        arg("mu_product"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"),
        arg("momentum_decay"), arg("decoupled_weight_decay"), arg("maximize"), arg("grad_scale"));
  m.def("grad_norm", &grad_norm_py, arg("grads"), arg("infinity"));
  m.def("clip_grad_value_", &clip_value_py, arg("grads"), arg("lo"), arg("hi"));
  m.def("scale_", &scale_py, arg("arrays"), arg("factor"));
  m.def("check_disjoint", &check_disjoint_py, arg("arrays"), arg("name"));
}

}  // namespace fdnn::bind
