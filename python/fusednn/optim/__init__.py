"""Optimizers (one fused kernel call per parameter group), gradient clipping and learning-rate
schedules. Update rules and their mapping onto the course's notation: docs/optim.md."""

from fusednn.optim import schedules
from fusednn.optim.optimizer import (SGD, Adadelta, Adagrad, Adam, AdamW, NAdam, Optimizer, RMSprop, clip_grad_norm,
                                     clip_grad_value, grad_norm)
from fusednn.optim.schedules import scale_lr

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "clip_grad_norm",
           "clip_grad_value", "grad_norm", "scale_lr", "schedules"]
