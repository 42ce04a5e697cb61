"""The README stays a short guide, and the docs hold together: every relative link and anchor
resolves, docs/config.md lists every config key once, and every `make X` the README names is
a target of the Makefile. Reads files only: no JAX computation.
"""

import collections
import pathlib
import re

import pytest

from actsearch import configs

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 20 * 1024

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
TABLE_KEY = re.compile(r"^\|\s*`([\w.]+)`\s*\|", re.M)


def _prose(path: pathlib.Path) -> str:
  """The page without its fenced code blocks (a `# comment` there is no heading)."""
  return FENCE.sub("", path.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lowercase, punctuation but '-' and ' ' dropped, spaces to
  '-'."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
  """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
  seen, out = collections.Counter(), set()
  for heading in HEADING.findall(_prose(path)):
    s = slug(heading)
    out.add(f"{s}-{seen[s]}" if seen[s] else s)
    seen[s] += 1
  return out


def _links() -> list[tuple[pathlib.Path, str]]:
  return [(page, target) for page in PAGES for target in LINK.findall(_prose(page))
          if not target.startswith(("http://", "https://", "mailto:"))]


@pytest.mark.parametrize("heading, expected", [
    ("The headline: does the found architecture beat ReLU, GELU and SiLU?",
     "the-headline-does-the-found-architecture-beat-relu-gelu-and-silu"),
    ("`make compare`: every strategy on one budget", "make-compare-every-strategy-on-one-budget"),
    ("The record (`architecture.json`)", "the-record-architecturejson"),
    ("mnist1d_cnn (data.data_seed=7)", "mnist1d_cnn-datadata_seed7"),
])
def test_slug(heading, expected):
  assert slug(heading) == expected


def test_readme_is_short():
  size = README.stat().st_size
  assert size <= README_MAX_BYTES, f"README.md is {size} bytes, at most {README_MAX_BYTES}"


@pytest.mark.parametrize("page, target", _links(),
                         ids=lambda v: v.name if isinstance(v, pathlib.Path) else v)
def test_link_resolves(page, target):
  path, _, anchor = target.partition("#")
  file = (page.parent / path).resolve() if path else page
  assert file.is_file(), f"{page.name}: link to {target}: no file {file}"
  if anchor:
    assert anchor in anchors(file), f"{page.name}: link to {target}: no such heading"


def test_config_table_lists_every_key_once():
  listed = TABLE_KEY.findall((ROOT / "docs" / "config.md").read_text(encoding="utf-8"))
  # every key that holds a value, and the empty namespace search.slot_candidates as one row
  keys = set(configs.leaf_keys(configs.base_config())) | {"search.slot_candidates"}
  twice = sorted(k for k, n in collections.Counter(listed).items() if n > 1)
  missing, extra = sorted(keys - set(listed)), sorted(set(listed) - keys)
  assert not (missing or extra or twice), f"missing {missing}, extra {extra}, twice {twice}"


def test_readme_make_targets_exist():
  makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
  targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
  named = set(re.findall(r"\bmake ([a-z][\w-]*)", README.read_text(encoding="utf-8")))
  assert named, "README.md names no make target"
  assert named <= targets, f"not in the Makefile: {sorted(named - targets)}"
