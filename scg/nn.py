"""Neural-network building blocks: Parameter, Module, Linear, Sequential, MLP, activations."""

import math
from collections import OrderedDict

import numpy as np

from . import ops
from .random import resolve
from .tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that requires grad and is found by ``Module.parameters()``."""

    def __init__(self, data, dtype=None):
        super().__init__(np.array(data.data if isinstance(data, Tensor) else data, dtype=dtype),
                         requires_grad=True)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("tensor"):]


class Module:
    """Base class: a Module's Parameters and sub-Modules are its attributes (also
    inside lists and tuples); ``named_parameters`` walks them in definition order."""

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        """What calling the module computes; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def named_parameters(self, prefix=""):
        """Yield ``(dotted_name, Parameter)`` pairs, each Parameter once."""
        seen = set()
        for name, p in self._walk(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _walk(self, prefix):
        for name, value in vars(self).items():
            yield from _walk_value(value, prefix + name)

    def parameters(self):
        """A list of the Module's Parameters."""
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        """Forget the accumulated gradients of every parameter."""
        for p in self.parameters():
            p.grad = None

    def state_dict(self):
        """An ordered mapping from parameter names to copies of their arrays."""
        return OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state):
        """Copy arrays from ``state`` into the parameters; every name must match exactly
        and every shape must agree (dtypes are converted to the parameter's)."""
        own = OrderedDict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(
                f"load_state_dict for {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, p in own.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(
                    f"load_state_dict for {type(self).__name__}: '{name}' has shape "
                    f"{value.shape} in the state dict but {p.shape} in the model"
                )
        for name, p in own.items():
            p.data[...] = state[name]
            p._bump()


def _walk_value(value, name):
    if isinstance(value, Parameter):
        yield name, value
    elif isinstance(value, Module):
        yield from value._walk(name + ".")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk_value(v, f"{name}.{i}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_value(v, f"{name}.{k}")


class Linear(Module):
    """``y = x @ weight + bias`` with weight of shape (in_features, out_features).

    Initialized as is standard for ReLU networks: weight and bias uniform on
    [-1/sqrt(in_features), 1/sqrt(in_features)].
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        rng = resolve(rng)
        bound = 1.0 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(rng.uniform(-bound, bound, (in_features, out_features)), dtype=dtype)
        self.bias = Parameter(rng.uniform(-bound, bound, out_features), dtype=dtype) if bias else None

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) got input of shape "
                f"{tuple(x.shape)}: its last axis must be {self.in_features}"
            )
        y = ops.matmul(x, self.weight)
        return y + self.bias if self.bias is not None else y

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class _Activation(Module):
    """An elementwise function as a Module."""

    fn = None

    def forward(self, x):
        return type(self).fn(x)

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """max(x, 0)."""

    fn = staticmethod(ops.relu)


class Tanh(_Activation):
    """tanh(x)."""

    fn = staticmethod(ops.tanh)


class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    fn = staticmethod(ops.sigmoid)


class Softplus(_Activation):
    """log(1 + exp(x))."""

    fn = staticmethod(ops.softplus)


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus}


class Sequential(Module):
    """Apply modules (or plain functions) in order."""

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


class MLP(Sequential):
    """Linear layers of the given ``sizes`` with ``activation`` between them
    (none after the last unless ``final_activation`` is given).

    ``MLP([784, 400, 20])`` maps (..., 784) to (..., 20).
    """

    def __init__(self, sizes, activation="relu", final_activation=None, dtype=np.float32, rng=None):
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got {sizes}")
        for name in (activation, final_activation):
            if name is not None and name not in ACTIVATIONS:
                raise ValueError(f"unknown activation '{name}'; choose from {sorted(ACTIVATIONS)}")
        rng = resolve(rng)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, dtype=dtype, rng=rng))
            last = i == len(sizes) - 2
            if not last:
                layers.append(ACTIVATIONS[activation]())
            elif final_activation is not None:
                layers.append(ACTIVATIONS[final_activation]())
        super().__init__(*layers)
