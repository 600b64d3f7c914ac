"""README.md and docs/*.md: every relative link and anchor resolves, and
every repository path they name (``tools/...``, ``configs/...``,
``sapool_mmdet/...``, ``tests/...``, ``docs/...``) exists.

Anchors are GitHub's: the heading text in lower case, punctuation other
than ``-`` and ``_`` removed, spaces turned into ``-``, a ``-N`` suffix for
the N-th repeat of a heading.
"""
import itertools
import os.path as osp
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))

LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
FENCE = re.compile(r'^(```|~~~)')
# A repository path: starts at a word boundary that is not part of a URL or
# of a longer path, may hold {a,b} alternatives (brace expansion).
REPO_PATH = re.compile(
    r'(?<![\w/.:-])((?:tools|configs|sapool_mmdet|tests|docs)/'
    r'[\w.{},/-]*[\w}/])')


def heading_anchor(heading: str) -> str:
    text = re.sub(r'`', '', heading.strip().lower())
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', text)  # linked text
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def page_lines(text: str) -> List[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    found = set()
    for line in page_lines(path.read_text(encoding='utf-8')):
        match = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not match:
            continue
        anchor = heading_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f'{anchor}-{count}')
    return found


def expand_braces(path: str) -> List[str]:
    """``a{b,c}d`` -> ``[abd, acd]``; a ``{name}`` without a comma is a
    placeholder (an f-string's), not a path: ``[]``."""
    parts = re.split(r'\{([^{}]*)\}', path)
    if any(',' not in part for part in parts[1::2]):
        return []
    choices = [[part] if i % 2 == 0 else part.split(',')
               for i, part in enumerate(parts)]
    return [''.join(pick) for pick in itertools.product(*choices)]


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize('page', PAGES, ids=relative)
def test_links_and_anchors_resolve(page):
    text = '\n'.join(page_lines(page.read_text(encoding='utf-8')))
    broken = []
    for target in LINK.findall(text):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, mailto: ...
            continue
        file_part, _, anchor = target.partition('#')
        linked = (page.parent / file_part).resolve() if file_part else page
        name = osp.relpath(linked, ROOT)
        if not linked.exists():
            broken.append(f'{target}: no file {name}')
            continue
        if anchor and linked.suffix == '.md' and anchor not in anchors(
                linked):
            broken.append(f'{target}: no heading with anchor #{anchor} in '
                          f'{name}')
    assert not broken, f'{relative(page)}:\n' + '\n'.join(broken)


@pytest.mark.parametrize('page', PAGES, ids=relative)
def test_named_repository_paths_exist(page):
    text = page.read_text(encoding='utf-8')
    missing = set()
    for path in REPO_PATH.findall(text):
        for candidate in expand_braces(path):
            if not (ROOT / candidate).exists():
                missing.add(candidate)
    assert not missing, (f'{relative(page)} names paths that do not '
                         f'exist: {sorted(missing)}')


def test_the_checks_find_broken_links_and_anchors(tmp_path):
    assert heading_anchor("Channel pruning (Ours+CP)") == \
        'channel-pruning-ourscp'
    assert heading_anchor("The authors' detection runs: "
                          "`configs/official/`") == \
        'the-authors-detection-runs-configsofficial'
    assert heading_anchor('Peak memory against s1') == \
        'peak-memory-against-s1'
    page = tmp_path / 'page.md'
    page.write_text('# Title\n\n## Part\n\n## Part\n\n```\n# not a heading'
                    '\n```\n')
    assert anchors(page) == {'title', 'part', 'part-1'}
    assert expand_braces('configs/ssd_mbv2_{nlp,lip}.py') == [
        'configs/ssd_mbv2_nlp.py', 'configs/ssd_mbv2_lip.py']
    assert expand_braces('configs/{name}.py') == []
    assert REPO_PATH.findall(
        'see tools/train.py, `configs/demo/`, https://x.org/tools/a.py '
        'and mmdet_repo/configs/network/') == ['tools/train.py',
                                                'configs/demo/']
    assert LINK.findall('[a](b.md#c) ![p](d.png) [x](http://e)') == [
        'b.md#c', 'd.png', 'http://e']


def test_pooling_page_example_runs_as_written():
    """docs/pooling.md's first example, executed as printed; its comment
    states the output shape."""
    text = (ROOT / 'docs' / 'pooling.md').read_text(encoding='utf-8')
    code = re.search(r'```python\n(.*?)```', text, re.S).group(1)
    namespace = {}
    exec(compile(code, 'docs/pooling.md', 'exec'), namespace)
    assert tuple(namespace['y'].shape) == (1, 64, 17, 10)
    assert 'here (1, 64, 17, 10)' in code
