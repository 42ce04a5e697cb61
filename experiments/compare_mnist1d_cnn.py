"""MNIST-1D, 1-D CNN (3 x 25 channels), the eight default candidates: a task of `make compare`.

The search of experiments/mnist1d_cnn_default8.py (the eight default candidates, 512 networks;
10-epoch screens, the best two of each slot shortlisted) on 4000 examples instead of 8000
(2000 train, 2000 val) and 10 search epochs instead of 40; the retrain 20 epochs on train + val.
Why smaller: at the experiment's own scale DARTS spends 8.9M examples, 55 forty-epoch trainings
for a black-box strategy (about 9 minutes each at 1x, 45 at 5x): twelve such searches do not
fit in the hour.
"""

from actsearch.configs import experiment, load_config


def get_config():
  c = load_config(experiment("mnist1d_cnn_default8"))
  c.data.num_samples = 4000
  c.search.epochs = 10
  c.retrain.epochs = 20
  c.retrain.baselines = []
  return c
