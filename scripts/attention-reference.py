#!/usr/bin/env python3
"""Reference values for `lightning::nn::scaled_dot_product_attention`, computed by torch's
`torch.nn.functional.scaled_dot_product_attention` in float64 on fixed inputs; writes
tests/fixtures/attention-reference.json, which tests/attention.rs reads.

Each case records q, k, v, the mask (if any), the options, the output, and the gradients
of q, k and v for the loss sum(output * weight) with a fixed random `weight`.

    pip install torch
    python3 scripts/attention-reference.py
"""
import json
import pathlib

import torch
import torch.nn.functional as F

torch.manual_seed(16)


def case(name, lead, tq, tk, d, dv, mask=None, is_causal=False, scale=None):
    q = torch.randn(*lead, tq, d, dtype=torch.float64, requires_grad=True)
    k = torch.randn(*lead, tk, d, dtype=torch.float64, requires_grad=True)
    v = torch.randn(*lead, tk, dv, dtype=torch.float64, requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)
    weight = torch.randn(out.shape, dtype=torch.float64)
    (out * weight).sum().backward()
    flat = lambda t: {"shape": list(t.shape), "data": t.detach().flatten().tolist()}
    entry = {
        "name": name,
        "q": flat(q),
        "k": flat(k),
        "v": flat(v),
        "is_causal": is_causal,
        "scale": scale,
        "weight": flat(weight),
        "out": flat(out),
        "dq": flat(q.grad),
        "dk": flat(k.grad),
        "dv": flat(v.grad),
    }
    if mask is not None:
        entry["mask"] = flat(mask.to(torch.float64) if mask.dtype == torch.bool else mask)
        entry["mask_is_bool"] = mask.dtype == torch.bool
    return entry


bool_mask = torch.rand(2, 1, 4, 5) > 0.3
bool_mask[0, 0, 1, :] = False  # a row hidden from every key: zeros, as torch's CPU kernel
float_mask = torch.randn(4, 5, dtype=torch.float64)
cases = [
    case("plain", (2, 3), 4, 4, 5, 5),
    case("causal_square", (2, 2), 5, 5, 3, 3, is_causal=True),
    case("causal_tq_lt_tk", (1, 2), 3, 6, 4, 2, is_causal=True),
    case("causal_tq_gt_tk", (1, 2), 6, 3, 4, 4, is_causal=True),
    case("bool_mask_broadcast", (2, 3), 4, 5, 3, 3, mask=bool_mask),
    case("float_mask_scale", (1, 2), 4, 5, 7, 2, mask=float_mask, scale=0.3),
    case("length_one", (3, 1), 1, 1, 1, 1),
]
out = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "attention-reference.json"
out.write_text(json.dumps({"torch": torch.__version__, "cases": cases}) + "\n")
print(f"wrote {out}")
