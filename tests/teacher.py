"""Regression data from a one-hidden-layer teacher network with a known activation."""

import numpy as np


def teacher_data(activation: str, seed: int, n_train: int = 4000, n_test: int = 500,
                 dim: int = 8, hidden: int = 8, scale: float = 2.0) -> dict[str, np.ndarray]:
  fn = {"sin": np.sin, "gaussian": lambda z: np.exp(-z * z), "tanh": np.tanh,
        "square": np.square, "soft_shrink": lambda z: z - np.clip(z, -0.5, 0.5),
        "relu": lambda z: np.maximum(z, 0.0), "signed_square": lambda z: z * np.abs(z)}[activation]
  rng = np.random.default_rng(1000 + seed)
  w1 = rng.normal(size=(dim, hidden)) * scale / np.sqrt(dim)
  b1 = rng.normal(size=hidden) * 0.5
  w2 = rng.normal(size=(hidden, 1)) / np.sqrt(hidden)
  x = rng.normal(size=(n_train + n_test, dim)).astype(np.float32)
  y = (fn(x @ w1 + b1) @ w2).astype(np.float32)
  y = (y - y[:n_train].mean()) / y[:n_train].std()
  return {"x_train": x[:n_train], "y_train": y[:n_train],
          "x_test": x[n_train:], "y_test": y[n_train:]}
