"""What the compressed modules share: the float bias they keep, and the check of a packed blob arriving
through ``load_state_dict`` (validated in full, its shape matched to the module's, our buffer resized to
it) before torch copies it in."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn


def float_bias(b: Optional[Tensor], n: int) -> Optional[Tensor]:
    """A float32 contiguous copy of a bias of shape (n,); ValueError if the shape is wrong or a value is
    not finite. None stays None."""
    if b is None:
        return None
    b = b.detach().to(torch.float32).contiguous().clone()
    if b.shape != (n,):
        raise ValueError(f"bias must have shape ({n},), got {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError("bias has a NaN or infinite value")
    return b


def check_packed_entry(mod: nn.Module, state_dict: dict, key: str, info_fn: Callable[..., Any],
                       error_msgs: list) -> Optional[Any]:
    """For ``state_dict[key]`` (a packed blob): its header info, after a full check and a shape match with
    ``mod``'s in/out features; ``mod.packed`` is resized to the blob so the copy that follows fills it.
    None when the key is absent or the blob is rejected (the reason appended to ``error_msgs``)."""
    if key not in state_dict:
        return None
    blob = state_dict[key]
    try:
        info = info_fn(blob.detach().cpu().contiguous(), full_check=True)
    except (ValueError, TypeError, AttributeError) as e:
        error_msgs.append(f"{key}: {e}")
        return None
    if (info.n, info.k) != (mod.out_features, mod.in_features):
        error_msgs.append(
            f"{key}: blob is for a {info.k}->{info.n} layer, this module is {mod.in_features}->{mod.out_features}"
        )
        return None
    # The blob's size depends on its group size (and, for q4, symmetry and scale dtype): resize ours.
    mod.packed = torch.empty_like(blob, device="cpu")
    return info


def bare_linear(cls: type, config: Any, in_features: int, out_features: int) -> nn.Module:
    """An instance of the linear module class ``cls`` built without its constructor (which would allocate
    and pack a dense weight first): an initialized ``nn.Module`` with ``config`` and its in/out features
    set; the caller registers the buffers."""
    mod = cls.__new__(cls)
    nn.Module.__init__(mod)
    mod.config = config
    mod.in_features, mod.out_features = in_features, out_features
    return mod


def is_hf_conv1d(mod: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2 family): y = x @ W + b with W (in, out), i.e. a Linear with W^T."""
    t = type(mod)
    return t.__name__ == "Conv1D" and t.__module__.startswith("transformers.") and hasattr(mod, "nf")
