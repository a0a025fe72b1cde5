"""Math layer: pure torch/numpy code that turns float weights into compressed ones (quantizers, GPTQ/AWQ,
pruning criteria, factorizations, calibration capture) and the float references every kernel is tested
against. No kernels, no modules: it imports only ``configs`` and itself.
"""
