"""Knowledge distillation: train a student (the compressed teacher, or a smaller model) on a teacher's
outputs, to recover accuracy lost to compression.

Loss = ``alpha`` * soft loss (KL between temperature-softened distributions, scaled by T^2, or MSE /
cosine for embeddings and regression) + (1 - ``alpha``) * hard loss (cross-entropy with the labels, when
batches carry labels) + ``feature_weight`` * feature matching (MSE between chosen teacher and student
module outputs, through a learned projection when their widths differ).

Compressed layers in the student are trained through a float *shadow*: each compressed module is
replaced for the duration by a float weight initialised from its dequantized weights. Its forward uses
the weights as the compressed format sees them (``fake_quant``: quantize then dequantize, with a
straight-through gradient; ``mask``: pruned weights held at zero, their gradients dropped), so training
sees the compression error. When training ends each shadow is compressed again with the module's own
config (re-quantized from the trained float weights; sparsity patterns kept), so the student leaves with
the same formats it came in with. Float ``nn.Linear`` layers with zeros in their weights (magnitude
pruning by masks) keep those zeros (``keep_sparsity``). Techniques register how to do this
(:class:`slimnn.techniques.Trainable`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..math.calibration import call_model, progress_iter
from ..ops.q8 import apply_activation
from ..techniques import Trainable, trainable_for
from ..techniques.registry import add_trainable


# Compressed module classes train through the shadows their technique registers (slimnn.techniques:
# Technique.trainable); kept importable under the old names for one release.
TrainableFormat = Trainable


def register_trainable(fmt: Trainable) -> Trainable:
    """Registers how a compressed module class trains (outside a technique, e.g. a plug-in's module)."""
    return add_trainable(fmt)


class ShadowLinear(nn.Module):
    """A trainable float stand-in for a compressed linear layer (see the module docstring)."""

    def __init__(self, original: nn.Module, weight: Tensor, bias: Optional[Tensor],
                 fake_quant: Optional[Callable[[Tensor], Tensor]], mask: Optional[Tensor]) -> None:
        super().__init__()
        self.original = [original]  # a list: not registered as a submodule, not trained
        self.weight = nn.Parameter(weight.detach().to(torch.float32).clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(torch.float32).clone())
        self.fake_quant = fake_quant
        self.register_buffer("mask", None if mask is None else mask.to(torch.float32))

    def effective_weight(self) -> Tensor:
        w = self.weight if self.mask is None else self.weight * self.mask
        if self.fake_quant is not None:
            w = w + (self.fake_quant(w.detach()) - w).detach()  # straight-through estimator
        return w

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x.to(torch.float32), self.effective_weight(), self.bias)
        act = getattr(self.original[0], "activation", None)  # a fused activation (slimnn.fuse_activations_)
        if act is not None:
            y = apply_activation(y, act)
        return y.to(x.dtype)

    def compress(self) -> nn.Module:
        fmt = trainable_for(type(self.original[0]))
        w = self.weight.detach() if self.mask is None else self.weight.detach() * self.mask
        b = None if self.bias is None else self.bias.detach()
        return fmt.from_shadow(self.original[0], w, b)


def _default_output(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict) or hasattr(out, "keys"):
        for k in ("logits", "sentence_embedding", "last_hidden_state"):
            if k in out:
                return out[k]
        for v in out.values():
            if isinstance(v, Tensor):
                return v
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"cannot find the output tensor in a {type(out).__name__}; pass output_fn")


def _set(model: nn.Module, fqn: str, mod: nn.Module) -> None:
    parent, _, child = fqn.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, mod)


def _split(batch: Any, labels: Optional[bool]) -> tuple[Any, Optional[Tensor]]:
    if labels is False:
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if labels:
        raise ValueError("labels=True but a batch is not an (inputs, labels) pair")
    return batch, None


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Iterable[Any],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    temperature: float = 2.0,
    alpha: float = 0.5,
    loss: str = "kl",
    labels: Optional[bool] = None,
    features: Sequence[tuple[str, str]] = (),
    feature_weight: float = 1.0,
    keep_sparsity: bool = True,
    masks: Optional[dict[str, Tensor]] = None,
    forward_fn: Optional[Callable[[nn.Module, Any], Any]] = None,
    output_fn: Optional[Callable[[Any], Tensor]] = None,
    max_steps: Optional[int] = None,
    seed: int = 0,
    progress: bool = True,
    history: Optional[list] = None,
) -> nn.Module:
    """Trains ``student`` to imitate ``teacher`` on ``data``; returns the student (trained in place).

    data: an iterable of batches (re-iterated each epoch), each ``x`` or ``(x, y)``; ``x`` is passed as
        ``model(x)`` / ``model(*x)`` / ``model(**x)`` (or ``forward_fn(model, x)``). ``labels``: ``None``
        treats 2-element tuples/lists as ``(x, y)``; ``True``/``False`` forces it.
    loss: ``"kl"`` (logits; soft targets at ``temperature``), ``"mse"`` or ``"cosine"`` (embeddings).
    alpha: weight of the soft loss; ``1 - alpha`` goes to the hard loss when labels are given
        (cross-entropy for integer labels, MSE for float targets).
    features: ``(teacher_module_name, student_module_name)`` pairs whose outputs are matched (MSE).
    keep_sparsity: float ``nn.Linear`` weights with exact zeros (over 1%) keep them; ``masks`` gives
        explicit 0/1 masks by module name instead.
    history: if a list is given, the loss of every step is appended to it.
    Compressed layers train through float shadows and are re-compressed at the end (module docstring).
    """
    if loss not in ("kl", "mse", "cosine"):
        raise ValueError(f"loss must be 'kl', 'mse' or 'cosine', got {loss!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    torch.manual_seed(seed)
    fwd = forward_fn or call_model
    out_fn = output_fn or _default_output
    teacher_mode, student_mode = teacher.training, student.training
    teacher.eval()

    # 1. Compressed modules -> float shadows.
    shadows: dict[str, ShadowLinear] = {}
    for name, mod in list(student.named_modules()):
        fmt = trainable_for(type(mod))
        if fmt is None or not name:
            continue
        if any(name.startswith(s + ".") for s in shadows):
            continue
        w, b, fq, mask = fmt.to_shadow(mod)
        sh = ShadowLinear(mod, w, b, fq, mask)
        shadows[name] = sh
        _set(student, name, sh)
    for name, mod in student.named_modules():
        if (type(mod).__module__.startswith("slimnn.nn") and trainable_for(type(mod)) is None
                and type(mod).__name__ != "FusedActivation"):  # no parameters; its Linear applies it
            raise TypeError(f"{name} is a {type(mod).__name__}, which distill cannot train (its technique "
                            "registers no Trainable shadow; see slimnn.techniques.gaps())")

    # 2. Masks for pruned float layers.
    mask_of: dict[str, Tensor] = {}
    for name, mod in student.named_modules():
        if type(mod) is not nn.Linear:
            continue
        if masks and name in masks:
            mask_of[name] = masks[name].to(mod.weight.dtype)
        elif keep_sparsity and masks is None:
            zero = mod.weight.detach() == 0
            if zero.float().mean() > 0.01:
                mask_of[name] = (~zero).to(mod.weight.dtype)
    hooks = []
    for name, m in mask_of.items():
        lin = student.get_submodule(name)
        if m.shape != lin.weight.shape:
            raise ValueError(f"mask for {name} has shape {tuple(m.shape)}, weight is {tuple(lin.weight.shape)}")
        with torch.no_grad():
            lin.weight.mul_(m)
        hooks.append(lin.weight.register_hook(lambda g, m=m: g * m))

    # 3. Feature matching hooks and projections.
    feats_t: dict[str, Tensor] = {}
    feats_s: dict[str, Tensor] = {}
    projs = nn.ModuleDict()

    def grab(store: dict, key: str) -> Callable:
        def hook(_m: nn.Module, _a: Any, out: Any) -> None:
            store[key] = _default_output(out)
        return hook

    for i, (tn, sn) in enumerate(features):
        hooks.append(teacher.get_submodule(tn).register_forward_hook(grab(feats_t, str(i))))
        hooks.append(student.get_submodule(sn).register_forward_hook(grab(feats_s, str(i))))

    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    T = float(temperature)
    student.train()
    step = 0
    try:
        for _epoch in range(epochs):
            for batch in progress_iter(data, "distill", progress, leave=False):
                x, y = _split(batch, labels)
                with torch.no_grad():
                    t_out = out_fn(fwd(teacher, x)).detach().float()
                s_out = out_fn(fwd(student, x)).float()
                if loss == "kl":
                    soft = F.kl_div(F.log_softmax(s_out / T, -1), F.log_softmax(t_out / T, -1),
                                    log_target=True, reduction="batchmean") * T * T
                elif loss == "mse":
                    soft = F.mse_loss(s_out, t_out)
                else:
                    soft = (1 - F.cosine_similarity(s_out, t_out, dim=-1)).mean()
                total = alpha * soft
                if y is not None and alpha < 1.0:
                    hard = F.cross_entropy(s_out, y) if not y.is_floating_point() else F.mse_loss(s_out, y.float())
                    total = total + (1 - alpha) * hard
                for key in list(feats_t):
                    ft, fs = feats_t[key].detach().float(), feats_s[key].float()
                    if fs.shape[-1] != ft.shape[-1]:
                        if key not in projs:
                            projs[key] = nn.Linear(fs.shape[-1], ft.shape[-1], bias=False)
                            opt.add_param_group({"params": list(projs[key].parameters())})
                        fs = projs[key](fs)
                    total = total + feature_weight * F.mse_loss(fs, ft)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                with torch.no_grad():
                    for name, m in mask_of.items():
                        student.get_submodule(name).weight.mul_(m)
                if history is not None:
                    history.append(float(total.detach()))
                step += 1
                if max_steps is not None and step >= max_steps:
                    break
            if max_steps is not None and step >= max_steps:
                break
    finally:
        for h in hooks:
            h.remove()
        # 4. Shadows -> compressed modules again (re-quantized from the trained weights).
        for name, sh in shadows.items():
            _set(student, name, sh.compress())
        teacher.train(teacher_mode)
        student.train(student_mode)
    return student
