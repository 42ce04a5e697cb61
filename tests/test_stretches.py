"""The loop's stretches between checkpoints, and the resume position of old and new records."""

import pytest

from actsearch import loop


@pytest.mark.parametrize("start, stop, spe, every, expected", [
    (0, 30, 10, 0, [(0, 10), (10, 20), (20, 30)]),                        # epochs only
    (0, 30, 10, 4, [(0, 4), (4, 8), (8, 10), (10, 12), (12, 16), (16, 20), (20, 24),
                    (24, 28), (28, 30)]),                                    # tests/test_kill.py
    (13, 30, 10, 4, [(13, 16), (16, 20), (20, 24), (24, 28), (28, 30)]),   # resumed mid-epoch
    (0, 8, 4, 3, [(0, 3), (3, 4), (4, 6), (6, 8)]),                          # the retrain kills
    (0, 20, 10, 25, [(0, 10), (10, 20)]),                                    # every > epoch
    (20, 20, 10, 4, []),                                                     # nothing left
])
def test_stretches_end_at_epochs_and_at_multiples_of_every(start, stop, spe, every, expected):
  got = loop.stretches(start, stop, spe, every)
  assert got == expected
  assert all(b - a >= 1 for a, b in got)  # no empty stretch


def test_a_record_without_a_step_resumes_at_its_epoch():
  assert loop._position({"epoch": 3, "metrics": {}}, 62) == 186   # written before step keys
  assert loop._position({"epoch": 3, "step": 190, "metrics": {}}, 62) == 190
