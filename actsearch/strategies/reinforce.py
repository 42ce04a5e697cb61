r"""Policy gradient (``search.strategy=reinforce``): one categorical policy per slot, trained by
REINFORCE (Williams 1992) on the val score of the networks it samples, with a moving-average
baseline, as the controller of the Swish paper (Ramachandran et al. 2017, "Searching for
activation functions") was trained on the child network's val accuracy.

Slot :math:`s` draws candidate :math:`k` with probability :math:`\pi_s = \mathrm{softmax}
(\theta_s)`. Each round samples ``search.reinforce.batch`` networks (trained together), and
for each network :math:`a` with score :math:`R`

.. math:: \theta_s \leftarrow \theta_s + \eta\, \frac{R - b}{\sigma}\,
          \nabla_{\theta_s} \log \pi_s(a_s) = \theta_s + \eta\, \frac{R - b}{\sigma}\,
          (e_{a_s} - \pi_s)

with :math:`\eta` = ``search.reinforce.lr``, :math:`b` the exponential moving average of the
scores (decay ``search.reinforce.baseline_decay``; its first value the first round's mean) and
:math:`\sigma` the standard deviation of every score seen so far (scores of any scale, accuracy
or minus a loss, give steps of one size; Swish's controller used PPO on accuracy alone). The
independent per-slot policy is the "policy per slot" the issue allows instead of an RNN: with
one choice per slot and no order between them it has the same optimum. Until the budget is
spent; the best network evaluated wins (not the policy's mode).
"""

from __future__ import annotations

import numpy as np

from actsearch.strategies import blackbox
from actsearch.strategies.evolution import PROPOSALS_PER_TRAINING


def _softmax(theta: np.ndarray) -> np.ndarray:
  e = np.exp(theta - theta.max())
  return e / e.sum()


def step(theta: list[np.ndarray], nets, scores, baseline: float, sigma: float,
         lr: float) -> list[np.ndarray]:
  """One REINFORCE update from a round: the mean over its networks of
  ``lr * (R - b) / sigma * (onehot(a_s) - softmax(theta_s))`` added to each slot's logits."""
  probs = [_softmax(t) for t in theta]
  out = [t.copy() for t in theta]
  for net, score in zip(nets, scores):
    advantage = (score - baseline) / sigma
    for s, k in enumerate(net):
      grad = -probs[s]
      grad[k] += 1.0
      out[s] += lr * advantage * grad / len(nets)
  return out


def search(space: blackbox.Space, evals: blackbox.Evaluations, seed: int, batch: int = 2,
           lr: float = 1.0, baseline_decay: float = 0.9) -> None:
  rng = np.random.default_rng([seed, 0x4F])
  theta = [np.zeros(len(c)) for c in space.candidates]
  baseline, seen = None, []
  limit = PROPOSALS_PER_TRAINING * max(evals.trainings, 1)
  while evals.proposals < limit and len(evals.scores) < space.size:
    nets = [tuple(int(rng.choice(len(t), p=_softmax(t))) for t in theta) for _ in range(batch)]
    scores = [blackbox.finite(s) for s in evals.evaluate(nets)]
    finite = [s for s in scores if np.isfinite(s)]
    if not finite:
      continue
    floor = min(finite)  # a diverged network scores as the worst of its round
    scores = [s if np.isfinite(s) else floor for s in scores]
    seen += scores
    if baseline is None:
      baseline = float(np.mean(scores))
    sigma = float(np.std(seen)) or 1.0
    theta = step(theta, nets, scores, baseline, sigma, lr)
    baseline = baseline_decay * baseline + (1 - baseline_decay) * float(np.mean(scores))
