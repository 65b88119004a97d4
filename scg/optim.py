"""Optimizers that update parameters in place: SGD (with momentum) and Adam.

Each keeps its state as arrays and round-trips it through ``state_dict`` /
``load_state_dict`` so that training resumes exactly.

Why the update is split into row blocks run on threads: an update is a handful of
elementwise passes over every parameter, memory-bound and single-threaded in numpy,
and it was a quarter of a VAE step. The parameters are cut into row blocks of about
equal size (views, no copies), dealt to ``scg.parallel.threads()`` workers, and every
worker runs the same in-place passes on its blocks: the arithmetic, and so the
result, is exactly that of the plain loop (see :mod:`scg.parallel`).
"""

import functools
import math
from numbers import Real

import numpy as np

from . import kernels
from .context import state
from .parallel import MIN_SIZE, run, threads


def _number(name, v, ok, requirement):
    """``v`` as a float if it is a real number (not a bool) with ``ok(v)``, else ValueError
    naming the hyperparameter and ``requirement``."""
    if isinstance(v, bool) or not isinstance(v, Real) or not ok(float(v)):
        raise ValueError(f"{name} must be {requirement}, got {v!r}")
    return float(v)


def _lr(v):
    return _number("lr", v, lambda x: math.isfinite(x) and x > 0, "positive and finite")


def _weight_decay(v):
    return _number("weight_decay", v, lambda x: math.isfinite(x) and x >= 0, "finite and >= 0")


def _blocks(shapes, n):
    """Deal the parameters, cut into row blocks, to ``n`` workers with about equal element
    counts: a list per worker of (parameter index, slice of its first axis or None)."""
    total = sum(int(np.prod(s)) for s in shapes)
    if n < 2 or total < MIN_SIZE:
        return [[(i, None) for i in range(len(shapes))]]
    target = -(-total // n)  # one share per worker: more blocks measured no better
    items = []
    for i, s in enumerate(shapes):
        size = int(np.prod(s))
        rows = s[0] if s else 1
        if size <= target or rows < 2:
            items.append((size, i, None))
            continue
        step = max(1, -(-rows * target // size))
        for a in range(0, rows, step):
            b = min(a + step, rows)
            items.append((size * (b - a) // rows, i, slice(a, b)))
    groups, loads = [[] for _ in range(n)], [0] * n
    for size, i, sl in sorted(items, key=lambda t: -t[0]):  # largest first to the least loaded
        k = loads.index(min(loads))
        groups[k].append((i, sl))
        loads[k] += size
    return groups


_STEPS_TAKEN = [0]  # optimiser steps taken in this process, by every optimizer


def steps_taken():
    """How many optimiser steps (of any optimizer) this process has taken: stateful baselines
    use it to notice statistics that an ``update()`` never applied (see scg.estimators)."""
    return _STEPS_TAKEN[0]


def _replayed(method):
    """``method`` (``step`` or ``zero_grad``) as an effect of a traced step (scg.trace): its
    outermost call inside a recording runs outside the recording, and every replay calls it
    again, so its Python bookkeeping (step counts, a schedule in a subclass) is kept. An
    override calling ``super().step()`` runs once: the inner call is not the outermost."""

    redo_safe = method.__name__ == "zero_grad"  # running it again from the step's start changes nothing

    @functools.wraps(method)
    def wrapper(self):
        rec = state.tracer
        if rec is not None and rec.active:
            return rec.effect(lambda: method(self), f"{type(self).__name__}.{method.__name__}", (self,),
                              redo_safe=redo_safe)
        return method(self)
    return wrapper


class Optimizer:
    """Base class: a list of parameters, hyperparameters, and per-parameter state arrays.
    ``step`` and ``zero_grad`` of every subclass are effects of a traced step (``_replayed``)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("step", "zero_grad"):
            if name in cls.__dict__:
                setattr(cls, name, _replayed(cls.__dict__[name]))

    def __init__(self, params, defaults):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for i, p in enumerate(self.params):
            if not getattr(p, "requires_grad", False):
                raise ValueError(f"{type(self).__name__}: parameter {i} (shape {p.shape}) does not require grad")
        self.hyper = dict(defaults)
        self._plans = {}  # (threads, shapes) -> row blocks per worker, see _blocks (threads vary: see parallel.blas_ran)
        self.step_count = 0
        self.param_steps = [0] * len(self.params)  # steps in which each parameter had a gradient
        self.state = {}  # name -> list of arrays, one per parameter

    def _count_step(self):
        self.step_count += 1
        _STEPS_TAKEN[0] += 1

    def zero_grad(self):
        """Forget the accumulated gradients."""
        for p in self.params:
            p.grad = None

    def _grads(self):
        return [None if p.grad is None else p.grad.data for p in self.params]

    def _for_each_block(self, update, grads):
        """Call ``update(i, sl, g)`` for every row block ``sl`` of every parameter ``i`` that has
        a gradient, on ``threads()`` workers (see the module docstring)."""
        n = threads()
        shapes = tuple(p.shape for p in self.params)
        plan = self._plans.get((n, shapes))
        if plan is None:
            plan = self._plans[n, shapes] = _blocks(shapes, n)

        def task(group):
            def go():
                for i, sl in group:
                    g = grads[i]
                    if g is not None:
                        update(i, sl, g if sl is None else g[sl])
            return go

        run([task(group) for group in plan])

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("_plans", {})  # an optimizer pickled before the plans were kept

    def state_dict(self):
        """Hyperparameters, step count and copies of the per-parameter state arrays."""
        return {
            "hyper": dict(self.hyper),
            "step": self.step_count,
            "param_steps": list(self.param_steps),
            "state": {k: [a.copy() for a in v] for k, v in self.state.items()},
        }

    _all_state_names = ()  # every per-parameter state a state dict may hold

    def required_state(self, hyper):
        """The per-parameter state a state dict must hold once a step was taken."""
        return ()

    @classmethod
    def check_hyper(cls, hyper):
        """The hyperparameters ``hyper`` (a dict) checked, as a new dict; ValueError names
        any that is missing, unknown or out of range."""
        raise NotImplementedError

    @classmethod
    def _check_keys(cls, hyper, names):
        if not isinstance(hyper, dict):
            raise ValueError(f"{cls.__name__}: the hyperparameters must be a dict, got {type(hyper).__name__}")
        missing = [k for k in names if k not in hyper]
        unknown = [k for k in hyper if k not in names]
        if missing or unknown:
            what = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(map(str, unknown))}"] if unknown else [])
            raise ValueError(f"{cls.__name__}: hyperparameters {'; '.join(what)} (expected {', '.join(names)})")

    def load_state_dict(self, sd):
        """Restore a ``state_dict``; the number and shapes of parameters must match, and the
        hyperparameters must be valid (ValueError naming them: a checkpoint edited by hand or
        damaged must not train with lr = -1)."""
        name = type(self).__name__
        try:
            hyper = self.check_hyper(sd["hyper"])
        except ValueError as e:
            raise ValueError(f"{name}.load_state_dict: {str(e).removeprefix(name + ': ')}") from None
        step = sd["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"{name}.load_state_dict: step must be an integer >= 0, got {step!r}")
        steps = sd.get("param_steps", [step] * len(self.params))
        if not isinstance(steps, (list, tuple)) or any(
                isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= step for n in steps):
            raise ValueError(f"{name}.load_state_dict: param_steps must be a list of integers in [0, step], "
                             f"got {steps!r}")
        if len(steps) != len(self.params):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict holds {len(steps)} entries "
                f"for {len(self.params)} parameters"
            )
        needed = self.required_state(hyper) if any(steps) else ()
        unknown = [k for k in sd["state"] if k not in self._all_state_names]
        missing = [k for k in needed if k not in sd["state"]]
        if unknown or missing:
            raise ValueError(f"{name}.load_state_dict: " + "; ".join(
                ([f"unknown state {', '.join(map(str, unknown))}"] if unknown else [])
                + ([f"state {', '.join(missing)} missing after {step} step(s)"] if missing else [])))
        for state_name, arrays in sd["state"].items():
            if len(arrays) != len(self.params):
                raise ValueError(
                    f"{name}.load_state_dict: state '{state_name}' has {len(arrays)} "
                    f"entries for {len(self.params)} parameters"
                )
            for i, (a, p) in enumerate(zip(arrays, self.params)):
                if np.shape(a) != p.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: state '{state_name}' of parameter {i} "
                        f"has shape {np.shape(a)}, but the parameter has shape {p.shape}"
                    )
        self.hyper = hyper
        self.step_count = int(step)
        self.param_steps = [int(n) for n in steps]
        self.state = {
            k: [np.array(a, dtype=p.dtype) for a, p in zip(v, self.params)] for k, v in sd["state"].items()
        }


Optimizer.zero_grad = _replayed(Optimizer.zero_grad)


class SGD(Optimizer):
    """``v = momentum * v + g``; ``p -= lr * v`` (plain SGD when momentum is 0).
    ``weight_decay`` adds ``weight_decay * p`` to the gradient."""

    _all_state_names = ("velocity",)

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, self.check_hyper(dict(lr=lr, momentum=momentum, weight_decay=weight_decay)))

    def required_state(self, hyper):
        return ("velocity",) if hyper["momentum"] else ()

    @classmethod
    def check_hyper(cls, hyper):
        cls._check_keys(hyper, ("lr", "momentum", "weight_decay"))
        return dict(lr=_lr(hyper["lr"]),
                    momentum=_number("momentum", hyper["momentum"], lambda x: 0 <= x < 1, "in [0, 1)"),
                    weight_decay=_weight_decay(hyper["weight_decay"]))

    def step(self):
        """Update every parameter that has a gradient, in place."""
        lr, mom, wd = (float(self.hyper[k]) for k in ("lr", "momentum", "weight_decay"))
        if mom and "velocity" not in self.state:
            self.state["velocity"] = [np.zeros_like(p.data) for p in self.params]
        grads = self._grads()

        def update(i, sl, g):
            p = self.params[i].data
            p = p if sl is None else p[sl]
            if wd:
                g = g + wd * p
            if mom:
                v = self.state["velocity"][i]
                v = v if sl is None else v[sl]
                v *= mom
                v += g
                g = v
            p -= lr * g

        self._for_each_block(update, grads)
        for p, g in zip(self.params, grads):
            if g is not None:
                p._bump()  # records made before this step would read the new values
        self._count_step()


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected ``m_hat, v_hat``."""

    _all_state_names = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, self.check_hyper(dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)))
        self._scratch = None  # one array per parameter for the update's intermediate

    def required_state(self, hyper):
        return self._all_state_names

    @classmethod
    def check_hyper(cls, hyper):
        cls._check_keys(hyper, ("lr", "betas", "eps", "weight_decay"))
        betas = hyper["betas"]
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        betas = tuple(_number("betas", b, lambda x: 0 <= x < 1, "in [0, 1)") for b in betas)
        return dict(lr=_lr(hyper["lr"]), betas=betas,
                    eps=_number("eps", hyper["eps"], lambda x: math.isfinite(x) and x > 0, "positive and finite"),
                    weight_decay=_weight_decay(hyper["weight_decay"]))

    def step(self):
        """Update every parameter that has a gradient, in place."""
        lr, (b1, b2), eps, wd = (float(self.hyper[k]) if k != "betas" else tuple(map(float, self.hyper[k]))
                                 for k in ("lr", "betas", "eps", "weight_decay"))
        if "m" not in self.state:
            self.state["m"] = [np.zeros_like(p.data) for p in self.params]
            self.state["v"] = [np.zeros_like(p.data) for p in self.params]
        if self._scratch is None:
            self._scratch = [np.empty_like(p.data) for p in self.params]
        self._count_step()
        grads = self._grads()
        coef = {}
        for i, g in enumerate(grads):
            if g is None:
                continue
            # Steps are counted per parameter: one that gets no gradient for a while starts
            # its bias correction at step 1 when it does (as torch.optim.Adam).
            self.param_steps[i] += 1
            t = self.param_steps[i]
            # Python floats, not numpy float64 scalars: those would make every pass below
            # compute in float64 and round back (NEP 50), twice as slow on float32 parameters.
            coef[i] = (float(lr * np.sqrt(1 - b2**t) / (1 - b1**t)), float(eps * np.sqrt(1 - b2**t)))
        state_m, state_v, scratch = self.state["m"], self.state["v"], self._scratch

        def update(i, sl, g):
            step_size, eps_hat = coef[i]
            p, m, v, tmp = self.params[i].data, state_m[i], state_v[i], scratch[i]
            if sl is not None:
                p, m, v, tmp = p[sl], m[sl], v[sl], tmp[sl]
            if kernels.adam(p, g, m, v, b1, b2, step_size, eps_hat, wd):
                return  # one fused pass (scg/_kernels.c), rounding as the passes below
            if wd:
                g = g + wd * p
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
            p -= tmp

        self._for_each_block(update, grads)
        for i in coef:
            self.params[i]._bump()
