"""A command's workdir record: ``config.json`` written at the start, compared on resume.

A run that resumes must compute what the interrupted one computed, so a workdir that holds a
run of another config is refused with one line naming the keys that differ; keys that say
only how a run goes (``configs.RUN_ONLY``: evaluation and checkpoint cadence, ...) may change,
and ``config.json`` is rewritten with them.
"""

from __future__ import annotations

import json
import os

import ml_collections

from actsearch import configs
from actsearch.errors import UserError
from actsearch.train import files


def prepare(workdir: str, cfg: ml_collections.ConfigDict, primary: bool) -> None:
  """Writes ``config.json``, or refuses a workdir that holds a run with another config."""
  path = os.path.join(workdir, "config.json")
  resolved = configs.to_json(cfg)
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        stored = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise UserError(f"{path} is unreadable ({e}); use a new --workdir") from None
    # Keys added to the defaults since the run began, at their defaults, are no difference.
    diff = [k for k in configs.diff_keys(stored, resolved)
            if not configs.new_default(stored, resolved, k)]
    refused = [k for k in diff if k not in configs.RUN_ONLY]
    if refused:
      raise UserError(f"{workdir} holds a run with a different config ({', '.join(refused)}); "
                      "use a new --workdir or the same settings to resume")
    if diff and primary:  # only the cadence changed: the file says how the run goes on
      files.write_json_atomic(path, resolved)
  elif primary:
    os.makedirs(workdir, exist_ok=True)
    files.write_json_atomic(path, resolved)
