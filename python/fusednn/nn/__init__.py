"""Layers and models over the fused ops (:mod:`fusednn.nn.layers`), initializers
(:mod:`fusednn.nn.init`) and losses (:mod:`fusednn.nn.losses`).

A model's parameters and gradients are views into one flat buffer each
(:attr:`Module.params`), so an optimizer step over the whole model is one kernel call per
parameter group."""

from fusednn.nn import init, losses
from fusednn.nn.conv import CNN, AvgPool2d, Conv2d, Dropout2d, GlobalAvgPool2d, MaxPool2d, Reshape
from fusednn.nn.layers import (MLP, Abs, BatchNorm, BatchNorm1d, BatchNorm2d, DropConnectLinear, Dropout, Flatten,
                               LayerNorm, Linear, LocalResponseNorm, ReLU, Sequential, Sigmoid, Tanh,
                               WeightNormLinear)
from fusednn.nn.module import RNG, Module
from fusednn.nn.rnn import GRU, LSTM, AsSequence, Embedding, EveryStep, LastStep

__all__ = ["init", "losses", "Module", "RNG", "Linear", "DropConnectLinear", "WeightNormLinear", "ReLU", "Sigmoid",
           "Tanh", "Abs", "Flatten", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "LocalResponseNorm",
           "Dropout", "Sequential", "MLP", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Dropout2d", "Reshape",
           "CNN", "LSTM", "GRU", "Embedding", "LastStep", "EveryStep", "AsSequence"]
