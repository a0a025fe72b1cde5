"""Whole-model sizes after compress_ (tied Llama at SmolLM2-135M's shapes, random weights; GPT-2 small's shapes).

    python bench/whole_models.py

Prints compress_'s summary line (parameter bytes before/after, share compressed, float left), whether the
tie survived, and the logits' agreement with the unconverted model on random token ids.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
import transformers

import slimnn


def main() -> None:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    base = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 32))
    with torch.no_grad():
        ref = base(ids).logits[0]
    for name, config in (("int8", slimnn.Int8Config()), ("int4 g32", slimnn.Int4Config(group_size=32))):
        m = copy.deepcopy(base)
        r = slimnn.compress_(m, config)
        with torch.no_grad():
            y = m(ids).logits[0]
        cos = F.cosine_similarity(y, ref, dim=-1)
        top1 = (y.argmax(-1) == ref.argmax(-1)).float().mean()
        print(f"SmolLM2-135M shapes, {name}: {r.summary()}; ratio {r.bytes_after / r.bytes_before:.3f}; "
              f"tie kept: {m.model.embed_tokens.packed is m.lm_head.packed}; logit cosine min {cos.min():.5f}, "
              f"top-1 agreement {top1:.1%}")
    g = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    r = slimnn.compress_(g, slimnn.Int8Config())
    left = sum(type(x).__name__ == "Conv1D" for x in g.modules())
    print(f"GPT-2 small shapes, int8: {r.summary()}; Conv1D left: {left}")


if __name__ == "__main__":
    main()
