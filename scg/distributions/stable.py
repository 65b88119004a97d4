"""Pieces of log-densities that cancel catastrophically when written the obvious way at
extreme (but valid) parameters, rewritten so float64 keeps its relative accuracy. All of
them are built from recorded ``scg.ops`` primitives (derivatives of any order); branches
are chosen with recorded comparisons, and each branch only ever sees safe inputs, so the
branch not taken cannot send NaN into a gradient.

* ``log_factorial_rest(x)`` = lgamma(x + 1) - (x log x - x), the part of log x! that
  Stirling's formula leaves (0 at x = 0). Every count family then needs only this and
* ``deviance(k, m)`` = k log(k / m) + m - k >= 0 (Loader 2000, "Fast and accurate
  computation of binomial probabilities", bd0), which is small exactly where the
  obvious log-density is a difference of huge terms:
      log Poisson(k; r)        = -deviance(k, r) - log_factorial_rest(k),
      log Binomial(k; n, p)    = rest(n) - rest(k) - rest(n - k) - dev(k, n p) - dev(n - k, n q).
* ``log1p_square(z, s)`` = log(1 + (z/s)^2) without (z/s)^2 overflowing (Cauchy, StudentT tails).
* ``half_lgamma_ratio(a)`` = lgamma(a + 1/2) - lgamma(a) - log(a) / 2 (StudentT's normaliser).
"""

import math
from fractions import Fraction

import numpy as np

from .. import ops

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _bernoulli_numbers(n):
    """B_0..B_n as Fractions (B_1 = -1/2), by the usual recurrence."""
    b = [Fraction(1)]
    for m in range(1, n + 1):
        b.append(-sum(math.comb(m + 1, j) * b[j] for j in range(m)) / (m + 1))
    return b


_B = _bernoulli_numbers(16)
# Stirling's series lgamma(x + 1) = (x + 1/2) log x - x + log(2 pi)/2 + sum_k B_2k / (2k (2k-1) x^(2k-1)):
# eight terms leave < 1e-18 relative above STIRLING_MIN (the next is B_18 / (306 x^17)).
STIRLING_MIN = 15.0
# Continuous families switch to Loader's form where their count-like parameter a - 1 is past it.
LOADER_MIN = STIRLING_MIN + 1
_STIRLING = [float(_B[2 * k] / (2 * k * (2 * k - 1))) for k in range(1, 9)]
# lgamma(a + h) - lgamma(a) - h log a ~ sum_n (-1)^n (B_n(h) - B_n) / (n (n-1) a^(n-1)) with
# B_n(1/2) = (2^(1-n) - 1) B_n; only even n contribute. Above HALF_RATIO_MIN the terms
# through n = 16 leave < 1e-20.
HALF_RATIO_MIN = 15.0
_HALF_RATIO = [float((Fraction(2) ** (1 - n) - 2) * _B[n] / (n * (n - 1))) for n in range(2, 17, 2)]


def _odd_series(coeffs, inv):
    """sum_k coeffs[k] inv^(2k+1), by Horner in inv^2."""
    inv2 = inv * inv
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = c + inv2 * acc
    return acc * inv


def log_factorial_rest(x):
    """lgamma(x + 1) - x log x + x for x >= 0 (0 at x = 0): log(2 pi x)/2 plus Stirling's
    series above STIRLING_MIN, where the direct difference would cancel; directly below,
    where every term is small."""
    big = ops.greater(x, STIRLING_MIN)
    xb = ops.where(big, x, 2 * STIRLING_MIN)
    xs = ops.where(big, 1.0, x)
    series = HALF_LOG_2PI + 0.5 * ops.log(xb) + _odd_series(_STIRLING, 1 / xb)
    direct = ops.lgamma(xs + 1) - ops.xlogy(xs, xs) + xs
    return ops.where(big, series, direct)


# |v| < 0.1 below: v^2 < 0.01, so nine terms of the series leave < 1e-19 relative.
_DEVIANCE_TERMS = 9


def deviance(k, m):
    """k log(k / m) + m - k for k, m >= 0 (Loader's bd0): m at k = 0, inf at m = 0 < k.
    Near k = m the direct form loses all its digits (it is ~(k - m)^2 / 2m, a difference of
    terms ~k log k); there, with v = (k - m) / (k + m), it is (k - m) v + 2k sum_j v^(2j+1) / (2j+1)."""
    pos_k, pos_m = ops.greater(k, 0), ops.greater(m, 0)
    ks = ops.where(pos_k, k, 1.0)
    ms = ops.where(pos_m, m, 1.0)
    v = (ks - ms) / (ks + ms)
    near = ops.less(ops.abs(v), 0.1)
    vn = ops.where(near, v, 0.0)
    v2 = vn * vn
    term, acc = 2 * ks * vn, 0.0
    for j in range(1, _DEVIANCE_TERMS + 1):
        term = term * v2
        acc = acc + term / (2 * j + 1)
    series = (ks - ms) * vn + acc
    kf = ops.where(near, 2.0, ks)  # the direct form only where k / m is outside (0.82, 1.22)
    mf = ops.where(near, 1.0, ms)
    direct = kf * ops.log(kf / mf) + mf - kf
    both = ops.where(near, series, direct)
    return ops.where(pos_k, ops.where(pos_m, both, np.inf), m)


def log1p_square(z, s=1.0):
    """log(1 + (z / s)^2) for s > 0, as 2 (log|z| - log s) + log1p((s / z)^2) for |z| > s so
    that nothing overflows (log(1 + (1e200)^2) = 921.03, not inf; StudentT's z / sqrt(df)
    at df = 1e-300)."""
    big = ops.greater(ops.abs(z), s)
    zb = ops.where(big, z, 2.0 * s)
    zs = ops.where(big, 0.0, z)
    inv = s / zb  # (squared after dividing: it underflows quietly where (z / s)^2 would overflow)
    log_s = math.log(s) if isinstance(s, (int, float)) else ops.log(s)  # (a number keeps z's dtype)
    return ops.where(big, 2 * (ops.log(ops.abs(zb)) - log_s) + ops.log1p(inv * inv), ops.log1p((zs / s) ** 2))


def half_lgamma_ratio(a):
    """lgamma(a + 1/2) - lgamma(a) - log(a) / 2 for a > 0: the asymptotic series above
    HALF_RATIO_MIN (the direct difference of two lgammas ~a log a keeps only ~1/a of its
    relative accuracy: at a = 5e14 not even the sign), directly below."""
    big = ops.greater(a, HALF_RATIO_MIN)
    ab = ops.where(big, a, 2 * HALF_RATIO_MIN)
    as_ = ops.where(big, 1.0, a)
    series = _odd_series(_HALF_RATIO, 1 / ab)
    direct = ops.lgamma(as_ + 0.5) - ops.lgamma(as_) - 0.5 * ops.log(as_)
    return ops.where(big, series, direct)


def lgamma_shift(a, b):
    """lgamma(a + b) - lgamma(a) for a, b > 0, without the cancellation of two lgammas ~a log a
    at large a: (a - 1/2) log1p(b / a) + b log(a + b) - b plus the difference of the Stirling
    remainders, above LOADER_MIN (directly below)."""
    big = ops.greater(a, LOADER_MIN)
    ab = ops.where(big, a, 2 * LOADER_MIN)
    as_ = ops.where(big, 1.0, a)

    def remainder(x):  # lgamma(x) - (x - 1/2) log x + x - log(2 pi)/2, x > STIRLING_MIN
        return _odd_series(_STIRLING, 1 / x)

    series = (ab - 0.5) * ops.log1p(b / ab) + b * ops.log(ab + b) - b + remainder(ab + b) - remainder(ab)
    direct = ops.lgamma(as_ + b) - ops.lgamma(as_)
    return ops.where(big, series, direct)
