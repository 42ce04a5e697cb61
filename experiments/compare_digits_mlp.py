"""sklearn digits 8x8, MLP (64, 64), the eight default candidates: a task of `make compare`.

The search of experiments/digits_mlp.py over the eight default candidates (64 networks) with
10 search epochs instead of 40; recipe, screen, shortlist and retrain as there. Why smaller:
`make compare` runs each strategy at two budgets with three search seeds here, and at the
experiment's own scale DARTS spends 1.1M examples, 160 ten-epoch trainings for a black-box
strategy (evolution took 305 s): 36 such searches do not fit in the hour.
"""

from actsearch.configs import experiment, load_config


def get_config():
  c = load_config(experiment("digits_mlp"))
  c.search.strategy = "darts"     # the reference: its spend sets every strategy's budget
  c.search.candidates = ["default"]
  c.search.epochs = 10
  c.retrain.baselines = []
  return c
