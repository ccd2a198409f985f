// One registration function per family; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace fdnn::bind {
void bind_linear(pybind11::module_& m);
void bind_xent(pybind11::module_& m);
void bind_norm(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_optim(pybind11::module_& m);
}  // namespace fdnn::bind
