"""The PyTorch half of `advsign validate`: recomputes, for an advsign model loaded into torch
(advsign_torch.py), what advsign computed with TensorFlow.js on the same images, and writes it
back for comparison. Work directory layout (raw little-endian arrays, NHWC like advsign):

  manifest.json   {"model", "n", "size", "eps", "steps", "stepSize", "autoattack": N or 0}
  images.f32 labels.i32 start.f32 underflow.u8   inputs written by advsign
  -> logits.f32 grad.f32 grad_rule.f32 logits64.f64 grad64.f64 fgsm.f32 pgd.f32 [aa_robust.u8] info.json

grad.f32 is PyTorch's own float32 cross-entropy gradient (autograd of the summed CE): on a
confident image its label entry p_y - 1 cancels in float32, so it is not the exact gradient there.
grad_rule.f32 is advsign's documented cotangent (src/inference/objective.ts) in float32: the label
entry written -sum of the other probabilities, and for an image whose cotangent is below 1e-30
everywhere (underflow.u8) the same direction without underflow, softmax over the other classes -
e_y. grad64.f64 is that cotangent with the model and the backward pass in float64: the reference
the exact gradient is judged against. FGSM and PGD use the float32 rule, as advsign does.
"""
import copy
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from advsign_torch import load_logits_model  # noqa: E402

CE_UNDERFLOW = 1e-30


def read(work, name, dtype, shape):
    return np.fromfile(os.path.join(work, name), dtype=dtype).reshape(shape)


def write(work, name, arr):
    np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder('<')).tofile(os.path.join(work, name))


def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def vjp(model, x, cotangent_of):
    x = x.clone().requires_grad_(True)
    z = model(x)
    c = cotangent_of(z.detach())
    (g,) = torch.autograd.grad((z * c).sum(), [x])
    return z.detach(), g


def rule_cotangent(z, y, under=None):
    """softmax(z) - e_y with the label entry -sum_{j != y} p_j; rescaled where it underflows."""
    k = z.shape[1]
    e = torch.nn.functional.one_hot(y, k).to(z.dtype)
    p_others = torch.softmax(z, 1) * (1 - e)
    plain = p_others - e * p_others.sum(1, keepdim=True)
    rescaled = torch.softmax(z - e * 1e30, 1) * (1 - e) - e
    if under is None:
        under = plain.abs().max(1, keepdim=True)[0] < CE_UNDERFLOW
    return torch.where(under.reshape(-1, 1), rescaled, plain)


def main(work):
    m = json.load(open(os.path.join(work, 'manifest.json')))
    torch.set_num_threads(int(os.environ.get('ADVSIGN_TORCH_THREADS', '1')))
    model, info = load_logits_model(m['model'])
    n, s, eps = m['n'], m['size'], m['eps']
    x = nchw(read(work, 'images.f32', '<f4', (n, s, s, 3)))
    y = torch.from_numpy(read(work, 'labels.i32', '<i4', (n,)).astype(np.int64))
    start = nchw(read(work, 'start.f32', '<f4', (n, s, s, 3)))

    xg = x.clone().requires_grad_(True)
    z = model(xg)
    loss = torch.nn.functional.cross_entropy(z, y, reduction='sum')
    (g_plain,) = torch.autograd.grad(loss, [xg])
    z = z.detach()
    _, g_rule = vjp(model, x, lambda zz: rule_cotangent(zz, y))
    e = torch.nn.functional.one_hot(y, z.shape[1]).float()
    under = (torch.softmax(z, 1) * (1 - e)).sum(1) < CE_UNDERFLOW
    # Float64: the same weights, forward and backward in double precision. Which images are
    # rescaled follows advsign's float32 verdict (underflow.u8): a scale convention, same direction.
    ours_under = torch.from_numpy(read(work, 'underflow.u8', 'u1', (n,)).astype(bool))
    model64 = copy.deepcopy(model).double()
    z64, g64 = vjp(model64, x.double(), lambda zz: rule_cotangent(zz, y, ours_under))

    fgsm = torch.clamp(x + eps * torch.sign(g_rule), 0, 1)
    adv = start.clone()
    for _ in range(m['steps']):
        _, g = vjp(model, adv, lambda zz: rule_cotangent(zz, y))
        d = torch.clamp(adv + m['stepSize'] * torch.sign(g) - x, -eps, eps)
        adv = torch.clamp(x + d, 0, 1)

    write(work, 'logits.f32', z.numpy().astype('<f4'))
    write(work, 'grad.f32', nhwc(g_plain).astype('<f4'))
    write(work, 'grad_rule.f32', nhwc(g_rule).astype('<f4'))
    write(work, 'logits64.f64', z64.numpy().astype('<f8'))
    write(work, 'grad64.f64', nhwc(g64).astype('<f8'))
    write(work, 'fgsm.f32', nhwc(fgsm).astype('<f4'))
    write(work, 'pgd.f32', nhwc(adv).astype('<f4'))
    out = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'endsInSoftmax': info['ends_in_softmax'],
           'underflowImages': int(under.sum())}

    if m.get('autoattack'):
        from autoattack import AutoAttack  # the reference implementation, when installed
        k = m['autoattack']
        t0 = time.time()
        aa = AutoAttack(model, norm='Linf', eps=eps, version='standard', device='cpu', verbose=False, seed=0)
        x_adv = aa.run_standard_evaluation(x[:k], y[:k], bs=250)
        with torch.no_grad():
            robust = (model(x_adv).max(1)[1] == y[:k]).numpy().astype(np.uint8)
        write(work, 'aa_robust.u8', robust)
        out['autoattackSeconds'] = time.time() - t0
    json.dump(out, open(os.path.join(work, 'info.json'), 'w'))


if __name__ == '__main__':
    if len(sys.argv) == 2 and sys.argv[1] == '--check':
        print(torch.__version__)
        sys.exit(0)
    main(sys.argv[1])
