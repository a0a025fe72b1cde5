"""Ops layer: torch custom ops over ``_C``, one module per kernel family (``q8``, ``q4``, ``sparse``,
``lowrank``, ``attn``), each with an eager entry that validates its inputs, a ``torch.library`` op with a
fake implementation and autograd, and the kernel names it ran. ``common`` holds the shared input checks.

The int8 entry points and ``attention`` are re-exported here (``slimnn.ops.q8_linear``,
``slimnn.ops.attention``), as before the package had folders.
"""

from .attn import attention, attention_kernels, attention_with_kernel
from .q8 import (
    ACTIVATIONS,
    activation_code,
    activation_grad,
    apply_activation,
    q8_linear,
    q8_linear_module,
    q8_linear_with_kernel,
)

__all__ = [
    "ACTIVATIONS", "activation_code", "activation_grad", "apply_activation", "attention", "attention_kernels",
    "attention_with_kernel", "q8_linear", "q8_linear_module", "q8_linear_with_kernel",
]
