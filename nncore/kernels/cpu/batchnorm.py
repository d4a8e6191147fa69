"""numba twins of :mod:`nncore.kernels.reference.batchnorm` (statistics summed in float64)."""

import numpy as np
from numba import prange

from .jit import pjit


@pjit
def _batchnorm_forward(x3, gamma, beta, eps, out, xhat, mean, var, inv_std):
    n, c, p = x3.shape
    m = n * p
    for ci in prange(c):
        s = 0.0
        for ni in range(n):
            for k in range(p):
                s += x3[ni, ci, k]
        mu = s / m
        v = 0.0
        for ni in range(n):
            for k in range(p):
                d = x3[ni, ci, k] - mu
                v += d * d
        v /= m
        mean[ci] = mu
        var[ci] = v
        inv_std[ci] = 1.0 / np.sqrt(v + eps)
        mu_t, inv_t, g, b = mean[ci], inv_std[ci], gamma[ci], beta[ci]  # read back in x's dtype
        for ni in range(n):
            for k in range(p):
                h = (x3[ni, ci, k] - mu_t) * inv_t
                xhat[ni, ci, k] = h
                out[ni, ci, k] = g * h + b


def batchnorm_forward(x3, gamma, beta, eps):
    """numba twin of :func:`nncore.kernels.reference.batchnorm_forward` (statistics summed in float64)."""
    x3 = np.ascontiguousarray(x3)
    c = x3.shape[1]
    out, xhat = np.empty_like(x3), np.empty_like(x3)
    mean, var, inv_std = (np.empty(c, dtype=x3.dtype) for _ in range(3))
    _batchnorm_forward(x3, gamma, beta, float(eps), out, xhat, mean, var, inv_std)
    return out, xhat, mean, var, inv_std


@pjit
def _batchnorm_backward(dout3, xhat, gamma, inv_std, need_dx, m_t, dx, dgamma, dbeta):
    n, c, p = dout3.shape
    for ci in prange(c):
        sb = 0.0
        sg = 0.0
        for ni in range(n):
            for k in range(p):
                d = dout3[ni, ci, k]
                sb += d
                sg += d * xhat[ni, ci, k]
        dbeta[ci] = sb
        dgamma[ci] = sg
        if need_dx:
            kk = gamma[ci] * inv_std[ci]
            mb = dbeta[ci] / m_t[0]  # all in dout's dtype: m_t holds M in that dtype
            mg = dgamma[ci] / m_t[0]
            for ni in range(n):
                for k in range(p):
                    dx[ni, ci, k] = kk * (dout3[ni, ci, k] - mb - xhat[ni, ci, k] * mg)


def batchnorm_backward(dout3, xhat, gamma, inv_std, need_dx=True):
    """numba twin of :func:`nncore.kernels.reference.batchnorm_backward`: (dx or None, dgamma, dbeta)."""
    dout3 = np.ascontiguousarray(dout3)
    c = dout3.shape[1]
    dx = np.empty_like(dout3) if need_dx else np.empty((0, c, 0), dtype=dout3.dtype)
    dgamma, dbeta = np.empty(c, dtype=dout3.dtype), np.empty(c, dtype=dout3.dtype)
    m_t = np.array([dout3.shape[0] * dout3.shape[2]], dtype=dout3.dtype)
    _batchnorm_backward(dout3, np.ascontiguousarray(xhat), gamma, inv_std, need_dx, m_t, dx, dgamma, dbeta)
    return (dx if need_dx else None), dgamma, dbeta
