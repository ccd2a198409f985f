"""Plain NumPy implementations of every op in :mod:`fusednn.ops`, with the same names and
signatures: the specification the kernels are tested against (docs/ops.md)."""

from fusednn.reference.activation import relu, relu_backward
from fusednn.reference.augment import augment, augment_params
from fusednn.reference.conv import (conv2d, conv2d_backward, max_pool2d, max_pool2d_backward, avg_pool2d,
                                    avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward)
from fusednn.reference.dropout import (drop_connect, drop_connect_backward, dropout, dropout_backward, dropout_mask,
                                       gaussian_noise, philox4x32_10, philox_uint32)
from fusednn.reference.gather import gather_rows
from fusednn.reference.linear import linear, linear_backward
from fusednn.reference.norm import (batch_norm, batch_norm_backward, layer_norm, layer_norm_backward,
                                    local_response_norm, local_response_norm_backward, weight_norm,
                                    weight_norm_backward)
from fusednn.reference.optim import (adadelta_step, adagrad_step, adam_step, add_penalty_grad, clip_grad_value_,
                                     grad_norm, nadam_step, rmsprop_step, scale_, sgd_step)
from fusednn.reference.xent import (log_softmax, log_softmax_backward, softmax, softmax_backward,
                                    softmax_cross_entropy, softmax_cross_entropy_with_grad)
from fusednn.reference.rnn import gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_dropout_masks

__all__ = [
    "gather_rows",
    "augment_params", "augment",
    "relu", "relu_backward",
    "linear", "linear_backward",
    "conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "softmax_cross_entropy", "softmax_cross_entropy_with_grad",
    "batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward",
    "weight_norm", "weight_norm_backward", "local_response_norm", "local_response_norm_backward",
    "dropout_mask", "dropout", "dropout_backward", "drop_connect", "drop_connect_backward", "gaussian_noise",
    "philox4x32_10", "philox_uint32",
    "sgd_step", "adagrad_step", "rmsprop_step", "adadelta_step", "adam_step", "nadam_step",
    "grad_norm", "clip_grad_value_", "scale_", "add_penalty_grad",
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_dropout_masks",
]
