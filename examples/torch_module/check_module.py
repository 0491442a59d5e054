"""Run with `python check_module.py` in this folder: the module's input and parameter
gradients (fc_weight, fc_bias, norm_weight) checked in float32 and float64."""

import torch

import gradcheck
from my_module import Block

torch.manual_seed(0)
block = Block()
inputs = {"x": torch.randn(6, 5)}

result = gradcheck.check_torch(block, inputs, dtypes=["float32", "float64"])
print(result)
rows = result.comparisons
print("checked:", ", ".join(sorted(set(rows.param) - {"(value)"})))
