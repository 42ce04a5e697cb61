r"""The bench's PyTorch peer: the reference MLP's DARTS-style first-order step, written in PyTorch.

The same step as the bench's ``mlp`` case: 784 -> 1024 x 3 -> 10, a train and a val batch of
256 (random normal inputs, random labels), the benchmark's eight candidates mixed in every
slot as a weighted sum :math:`\sum_k \mathrm{softmax}(\alpha)_k f_k(x)` per layer; the
architecture step (Adam on alpha, learning rate 3e-4, betas 0.5 and 0.999, weight decay 1e-3)
on the gradient of the val loss at the current weights (first order: the hypergradient has no
virtual step), then the weight step (SGD, learning rate 0.025, momentum 0.9, weight decay 3e-4,
gradients clipped to norm 5) on the train loss. Each gradient is taken with respect to what
its step updates only (``torch.autograd.grad``), as the JAX step's are.

Timed eagerly and under ``torch.compile``, on PyTorch's default CPU threads: ``actsearch bench``
times them in one round-robin with its own mlp steps, so that the machine's drift touches both
alike. PyTorch is optional: where it is not installed the case is skipped with a note
(``pip install torch``; its CPU build is what the figures are about).
"""

from __future__ import annotations

from actsearch.space.implementation import MEASURED_CANDIDATES as CANDIDATES

WIDTHS = (1024, 1024, 1024)
BATCH = 256


def _step_fn(torch):
  nn, F = torch.nn, torch.nn.functional
  fns = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "sin": torch.sin,
         "gelu": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu, "elu": F.elu,
         "softplus": F.softplus}

  class Supernet(nn.Module):
    def __init__(self):
      super().__init__()
      dims = (784, *WIDTHS)
      self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
      self.head = nn.Linear(dims[-1], 10)
      self.alphas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(len(CANDIDATES)))
                                     for _ in WIDTHS)

    def forward(self, x):
      for layer, alpha in zip(self.layers, self.alphas):
        h = layer(x)
        w = torch.softmax(alpha, 0)
        x = sum(w[k] * fns[name](h) for k, name in enumerate(CANDIDATES))
      return self.head(x)

  net = Supernet()
  weights = [p for n, p in net.named_parameters() if not n.startswith("alphas")]
  alphas = list(net.alphas)
  opt_w = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
  opt_a = torch.optim.Adam(alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

  def step(xt, yt, xv, yv):
    val_loss = F.cross_entropy(net(xv), yv)
    for a, g in zip(alphas, torch.autograd.grad(val_loss, alphas)):
      a.grad = g
    opt_a.step()
    train_loss = F.cross_entropy(net(xt), yt)
    for p, g in zip(weights, torch.autograd.grad(train_loss, weights)):
      p.grad = g
    torch.nn.utils.clip_grad_norm_(weights, 5.0)
    opt_w.step()
    return train_loss.detach()
  return step


def steps(compiled: bool = True) -> tuple[dict, dict]:
  """``(info, calls)``: the peer's version and threads, and its steps as callables that take
  one step on fixed batches (``torch_eager_step_ms`` and, with ``compiled``,
  ``torch_compile_step_ms``), warmed up and ready to time; ``({"note": ...}, {})`` without
  PyTorch or where ``torch.compile`` fails."""
  try:
    import torch
  except ImportError:
    return {"note": "skipped: PyTorch is not installed (pip install torch, its CPU build)"}, {}
  torch.manual_seed(0)
  gen = torch.Generator().manual_seed(1)
  batches = (torch.randn(BATCH, 784, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen),
             torch.randn(BATCH, 784, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen))
  info = {"torch_version": torch.__version__, "torch_threads": float(torch.get_num_threads())}

  def call(step):
    def once() -> None:  # nothing returned: the timer has nothing of JAX's to wait for
      step(*batches)
    return once
  calls = {"torch_eager_step_ms": call(_step_fn(torch))}
  if compiled:
    try:
      step = torch.compile(_step_fn(torch))
      for _ in range(3):  # compiles on the first calls
        step(*batches)
      calls["torch_compile_step_ms"] = call(step)
    except Exception as err:  # noqa: BLE001 - a compiler missing on this machine is a note
      info["note"] = f"torch.compile failed here: {type(err).__name__}: {err}"[:200]
  return info, calls
