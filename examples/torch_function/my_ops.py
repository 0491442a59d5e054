"""A torch autograd Function with a hand-written backward: swish(x) = x * sigmoid(x).
`SwishBuggy` forgets the product rule's second term (a realistic slip)."""

import torch


class Swish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, g):
        x, s = ctx.saved_tensors
        return g * (s + x * s * (1 - s))


class SwishBuggy(Swish):
    @staticmethod
    def backward(ctx, g):
        _x, s = ctx.saved_tensors
        return g * s  # bug: d/dx [x * sigmoid(x)] lost its x * sigmoid'(x) term
