"""slimnn's fused attention inside Hugging Face transformers models (transformers >= 5).

    import slimnn
    slimnn.fast_attention_(model)      # every transformers PreTrainedModel inside `model` -> "slimnn" attention

``fast_attention_`` registers an attention function named ``"slimnn"`` with ``transformers.AttentionInterface``
and, under the same name, torch SDPA's mask builder with ``AttentionMaskInterface`` (so the model builds the
boolean [B, 1, Lq, Lk] mask, broadcast by strides, that the kernel reads without a copy; without a mask builder
transformers would pass no mask at all for a custom name). Then it calls ``set_attn_implementation("slimnn")``
on each PreTrainedModel found in ``model.modules()`` (a SentenceTransformer's inner BertModel, for instance),
float or slimnn-compressed alike.

The function follows transformers' ``sdpa_attention_forward``: same causal rule (``is_causal`` kwarg, else the
module's flag, only when there is no mask and more than one query), same GQA mapping (``module.num_key_value_
groups``, read through the head counts). Whatever the kernel does not do goes to that very function instead:
training dropout, autograd, ``position_bias``, ``softcap``, sinks (``s_aux``), paged caches, non-CPU tensors,
``output_attentions``.

transformers is imported only when these functions are called.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

NAME = "slimnn"
_registered = False


def _sdpa_forward():  # noqa: ANN202
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def slimnn_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: returns (attn_output [B, Lq, H, Dv] contiguous, None)."""
    from ..ops.attn import attention

    unsupported = (
        (dropout > 0.0 and module.training)
        or (torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad))
        or query.device.type != "cpu"
        or query.dtype not in (torch.float32, torch.bfloat16, torch.float16)
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
        or kwargs.get("s_aux") is not None
        or kwargs.get("cache") is not None
        or kwargs.get("output_attentions", False)
        or (attention_mask is not None and not isinstance(attention_mask, torch.Tensor))
    )
    if unsupported:
        return _sdpa_forward()(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)
    out = attention(query, key, value, attention_mask, scaling, causal)  # the custom op under compile/export
    return out.transpose(1, 2), None


def register() -> None:
    """Registers "slimnn" with transformers' attention and mask interfaces (idempotent)."""
    global _registered
    if _registered:
        return
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as e:  # pragma: no cover - exercised only without transformers
        raise ImportError("slimnn.fast_attention_ needs transformers >= 5 (pip install transformers)") from e
    AttentionInterface.register(NAME, slimnn_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    _registered = True


def fast_attention_(model: nn.Module, enable: bool = True) -> nn.Module:
    """Runs every transformers PreTrainedModel inside ``model`` on slimnn's fused attention (in place).

    ``enable=False`` restores the implementation each model had before. Raises ValueError when ``model``
    holds no transformers model. Returns ``model``.
    """
    try:
        from transformers import PreTrainedModel
    except ImportError as e:
        raise ImportError("slimnn.fast_attention_ needs transformers >= 5 (pip install transformers)") from e
    register()
    found = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
    if not found:
        raise ValueError(f"fast_attention_: no transformers PreTrainedModel inside {type(model).__name__}")
    # Nested PreTrainedModels (LlamaForCausalLM > LlamaModel) usually share one config: read every previous
    # implementation before changing any, and restore in reverse order.
    if enable:
        prev = [m.config._attn_implementation for m in found]
        for m, p in zip(found, prev):
            if getattr(m, "_slimnn_prev_attn", None) is None:
                m._slimnn_prev_attn = p
        for m in found:
            m.set_attn_implementation(NAME)
    else:
        for m in reversed(found):
            p = getattr(m, "_slimnn_prev_attn", None)
            if p is not None:
                m.set_attn_implementation(p)
                m._slimnn_prev_attn = None
    return model
