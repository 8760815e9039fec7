"""PyTorch implementation of the autodiff interface (see `ddeq_keras.backend`)."""

import torch


def _as_leaf(x, keep_graph):
    x = torch.as_tensor(x)
    if keep_graph and x.requires_grad:
        return x  # stay connected to the outer graph
    return x.detach().requires_grad_(True)


def value_and_grad(fn, x, has_aux=False, higher_order=False):
    # Keras may call us under ``torch.no_grad()`` (predict, custom-gradient
    # forward and backward); the flow needs autograd regardless.
    with torch.enable_grad():
        leaf = _as_leaf(x, keep_graph=higher_order)
        out = fn(leaf)
        value = out[0] if has_aux else out
        (grad,) = torch.autograd.grad(
            value, leaf, create_graph=higher_order, allow_unused=True
        )
    if grad is None:
        grad = torch.zeros_like(leaf)
    if not higher_order:
        # Nothing from this evaluation may keep a graph alive: otherwise the
        # memory of a flow would grow with its number of steps.
        out = tuple(_detach(o) for o in out) if has_aux else _detach(out)
        grad = grad.detach()
    return out, grad


def _detach(tree):
    if isinstance(tree, torch.Tensor):
        return tree.detach()
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_detach(v) for v in tree)
    return tree


def vjp(fn, primals, cotangent):
    with torch.enable_grad():
        leaves = [
            torch.as_tensor(p).detach().requires_grad_(True)
            if torch.as_tensor(p).is_floating_point()
            else torch.as_tensor(p)
            for p in primals
        ]
        out = fn(*leaves)
        sources = [p for p in leaves if p.requires_grad]
        grads = torch.autograd.grad(
            out, sources, grad_outputs=torch.as_tensor(cotangent, dtype=out.dtype),
            allow_unused=True,
        )
    grads = iter(grads)
    result = []
    for p in leaves:
        g = next(grads) if p.requires_grad else None
        result.append(torch.zeros_like(p) if g is None else g.detach())
    return out.detach(), result


def is_concrete(x):
    # Keras traces shapes on the "meta" device, whose tensors hold no values.
    return isinstance(x, torch.Tensor) and x.device.type != "meta"


def send_to_host(callback, *tensors):
    callback(*(t.detach().cpu().numpy() for t in tensors))
