// One registration function per family; both modules call them all through bind_all.
#pragma once

#include <pybind11/pybind11.h>

namespace fdnn::bind {
void bind_linear(pybind11::module_& m);
void bind_xent(pybind11::module_& m);
void bind_norm(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
void bind_activation(pybind11::module_& m);
void bind_gather(pybind11::module_& m);
void bind_rnn(pybind11::module_& m);
void bind_augment(pybind11::module_& m);
void bind_conv(pybind11::module_& m);

// Every family, for both modules (fusednn._C and fusednn._C_cuda).
inline void bind_all(pybind11::module_& m) {
  bind_linear(m);
  bind_xent(m);
  bind_norm(m);
  bind_dropout(m);
  bind_optim(m);
  bind_activation(m);
  bind_gather(m);
  bind_rnn(m);
  bind_augment(m);
  bind_conv(m);
}
}  // namespace fdnn::bind
