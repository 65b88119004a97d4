"""Optimizers that update parameters in place: SGD (with momentum) and Adam.

Each keeps its state as arrays and round-trips it through ``state_dict`` /
``load_state_dict`` so that training resumes exactly.
"""

import numpy as np


class Optimizer:
    """Base class: a list of parameters, hyperparameters, and per-parameter state arrays."""

    def __init__(self, params, defaults):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, p in enumerate(self.params):
            if not getattr(p, "requires_grad", False):
                raise ValueError(f"{type(self).__name__}: parameter {i} (shape {p.shape}) does not require grad")
        self.hyper = dict(defaults)
        self.step_count = 0
        self.param_steps = [0] * len(self.params)  # steps in which each parameter had a gradient
        self.state = {}  # name -> list of arrays, one per parameter

    def zero_grad(self):
        """Forget the accumulated gradients."""
        for p in self.params:
            p.grad = None

    def _grads(self):
        return [None if p.grad is None else p.grad.data for p in self.params]

    def state_dict(self):
        """Hyperparameters, step count and copies of the per-parameter state arrays."""
        return {
            "hyper": dict(self.hyper),
            "step": self.step_count,
            "param_steps": list(self.param_steps),
            "state": {k: [a.copy() for a in v] for k, v in self.state.items()},
        }

    def load_state_dict(self, sd):
        """Restore a ``state_dict``; the number and shapes of parameters must match."""
        steps = sd.get("param_steps", [sd["step"]] * len(self.params))
        if len(steps) != len(self.params):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict holds {len(steps)} entries "
                f"for {len(self.params)} parameters"
            )
        for name, arrays in sd["state"].items():
            if len(arrays) != len(self.params):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: state '{name}' has {len(arrays)} "
                    f"entries for {len(self.params)} parameters"
                )
            for i, (a, p) in enumerate(zip(arrays, self.params)):
                if np.shape(a) != p.shape:
                    raise ValueError(
                        f"{type(self).__name__}.load_state_dict: state '{name}' of parameter {i} "
                        f"has shape {np.shape(a)}, but the parameter has shape {p.shape}"
                    )
        self.hyper = dict(sd["hyper"])
        self.step_count = int(sd["step"])
        self.param_steps = [int(n) for n in steps]
        self.state = {
            k: [np.array(a, dtype=p.dtype) for a, p in zip(v, self.params)] for k, v in sd["state"].items()
        }


class SGD(Optimizer):
    """``v = momentum * v + g``; ``p -= lr * v`` (plain SGD when momentum is 0).
    ``weight_decay`` adds ``weight_decay * p`` to the gradient."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        if not lr > 0:  # also rejects NaN
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def step(self):
        """Update every parameter that has a gradient, in place."""
        lr, mom, wd = self.hyper["lr"], self.hyper["momentum"], self.hyper["weight_decay"]
        if mom and "velocity" not in self.state:
            self.state["velocity"] = [np.zeros_like(p.data) for p in self.params]
        for i, (p, g) in enumerate(zip(self.params, self._grads())):
            if g is None:
                continue
            if wd:
                g = g + wd * p.data
            if mom:
                v = self.state["velocity"][i]
                v *= mom
                v += g
                g = v
            p.data -= lr * g
            p._bump()  # records made before this step would read the new values
        self.step_count += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected ``m_hat, v_hat``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not lr > 0:  # also rejects NaN
            raise ValueError(f"lr must be positive, got {lr}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self._scratch = None

    def step(self):
        """Update every parameter that has a gradient, in place."""
        lr, (b1, b2), eps, wd = (self.hyper[k] for k in ("lr", "betas", "eps", "weight_decay"))
        if "m" not in self.state:
            self.state["m"] = [np.zeros_like(p.data) for p in self.params]
            self.state["v"] = [np.zeros_like(p.data) for p in self.params]
        if self._scratch is None:
            self._scratch = [np.empty_like(p.data) for p in self.params]
        self.step_count += 1
        for i, (p, g, m, v, tmp) in enumerate(zip(self.params, self._grads(), self.state["m"], self.state["v"],
                                                   self._scratch)):
            if g is None:
                continue
            # Steps are counted per parameter: one that gets no gradient for a while starts
            # its bias correction at step 1 when it does (as torch.optim.Adam).
            self.param_steps[i] += 1
            t = self.param_steps[i]
            step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            eps_hat = eps * np.sqrt(1 - b2**t)
            if wd:
                g = g + wd * p.data
            # All in place: no temporaries the size of the parameter.
            m *= b1
            np.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp += eps_hat
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p.data -= tmp
            p._bump()
