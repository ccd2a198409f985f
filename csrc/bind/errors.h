// fdnn::TypeError / ValueError -> Python's TypeError / ValueError (other std::exceptions become
// RuntimeError, pybind11's default), for both modules.
#pragma once

#include <pybind11/pybind11.h>

#include "common/check.h"

namespace fdnn::bind {

inline void register_errors() {
  pybind11::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fdnn::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fdnn::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}

}  // namespace fdnn::bind
