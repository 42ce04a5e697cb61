"""``actsearch.mixed`` is ``actsearch.space.mixed``: the import path that experiments, notebooks
and the README used before the package had folders. The name is bound to the module itself
(not a copy of its names), so registries, monkeypatches and ``isinstance`` see one module."""

import sys

from actsearch.space import mixed as _module

sys.modules[__name__] = _module
