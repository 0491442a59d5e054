"""A CS231n-style batch norm layer: forward -> (out, cache), backward(dout, cache)."""

import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu, var = x.mean(axis=0), x.var(axis=0)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, 1 / np.sqrt(var + eps))


def batchnorm_backward(dout, cache):
    xhat, gamma, inv_std = cache
    n, dxhat = dout.shape[0], dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_buggy(dout, cache):
    xhat, gamma, inv_std = cache
    dx = inv_std * (dout * gamma - (dout * gamma).mean(axis=0))  # the path through var is missing
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def softmax_loss(x, y):
    """Value and gradient together: (loss, dx)."""
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(p[np.arange(n), y]).mean()
    p[np.arange(n), y] -= 1
    return loss, p / n
