"""The package's import structure: no import inside ``sapool_mmdet/`` runs
from a lower layer to a higher one, as ``docs/architecture.md`` documents,
and no modules import each other in a circle.

The layer order is read from the ```` ```layers ```` block of
``docs/architecture.md``, so the page and this check cannot disagree.
Imports are found by walking each file's syntax tree: imports inside
functions count too (a circle that only closes at call time is still a
circle), and ``from . import name`` resolves to the submodule ``name`` where
there is one.
"""
import ast
import os
import os.path as osp
import re
from typing import Dict, List, Set

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = 'sapool_mmdet'
ARCHITECTURE = osp.join(ROOT, 'docs', 'architecture.md')


def read_layers(text: str) -> Dict[str, int]:
    """``{folder or module: layer}`` from the ```` ```layers ```` block:
    one line per layer, ``N: name name ...``, 0 the lowest."""
    block = re.search(r'^```layers\n(.*?)^```', text, re.M | re.S)
    assert block, f'{ARCHITECTURE} has no ```layers block'
    layers = {}
    for line in block.group(1).splitlines():
        number, _, names = line.partition(':')
        for name in names.split():
            assert name not in layers, f'{name} is in two layers'
            layers[name] = int(number)
    return layers


def package_modules() -> Dict[str, str]:
    """``{dotted module name: file}`` for every .py file of the package."""
    modules = {}
    for folder, _, files in os.walk(osp.join(ROOT, PACKAGE)):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            parts = osp.relpath(path, ROOT)[:-3].split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            modules['.'.join(parts)] = path
    return modules


def imported_modules(module: str, path: str, known: Set[str]) -> Set[str]:
    """The package modules that ``module`` imports, anywhere in its file."""
    is_package = path.endswith('__init__.py')
    found = set()
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.')
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                source = node.module or ''
            targets = [f'{source}.{alias.name}' if f'{source}.{alias.name}'
                       in known else source for alias in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` and `from a.b import c` both need a.b.c's
            # nearest package module.
            while target and target not in known:
                target = target.rpartition('.')[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph() -> Dict[str, Set[str]]:
    modules = package_modules()
    return {module: imported_modules(module, path, set(modules))
            for module, path in modules.items()}


def layer_of(module: str, layers: Dict[str, int]) -> int:
    """The layer of ``sapool_mmdet.<folder>...`` or of a top-level module;
    the package's own ``__init__``/``__main__`` sit above everything."""
    parts = module.split('.')
    if module in (PACKAGE, f'{PACKAGE}.__main__'):
        return max(layers.values()) + 1
    if parts[1] not in layers:
        raise AssertionError(
            f'{module} is in no layer: add {parts[1]!r} to the ```layers '
            f'block of docs/architecture.md (and say there what it is for)')
    return layers[parts[1]]


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module
    (Tarjan's algorithm), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope='module')
def layers() -> Dict[str, int]:
    with open(ARCHITECTURE, encoding='utf-8') as f:
        return read_layers(f.read())


def test_every_folder_and_module_has_a_layer(layers):
    for module in package_modules():
        layer_of(module, layers)


def test_no_import_runs_upward(layers):
    wrong = []
    for module, targets in import_graph().items():
        own = module.split('.')[:2]
        for target in targets:
            if target.split('.')[:2] == own or target == PACKAGE:
                # within one folder; or the package root, which only
                # ``__main__`` may import (checked below)
                continue
            if layer_of(target, layers) > layer_of(module, layers):
                wrong.append(f'{module} (layer {layer_of(module, layers)}) '
                             f'imports {target} (layer '
                             f'{layer_of(target, layers)})')
    assert not wrong, 'imports against the layer order:\n' + '\n'.join(wrong)


def test_only_the_entry_point_imports_the_package_root():
    importers = sorted(module for module, targets in import_graph().items()
                       if PACKAGE in targets)
    assert importers == [f'{PACKAGE}.__main__']


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_checks_see_imports_and_circles(tmp_path):
    """The walker on a made-up package: relative, absolute, in-function and
    submodule imports, and a circle of three."""
    known = {'p', 'p.a', 'p.b', 'p.c', 'p.sub', 'p.sub.d'}
    source = ('from .b import x\n'
              'import p.sub.d\n'
              'def f():\n'
              '    from . import c\n'
              '    from .sub import d\n'
              'import os\n')
    path = tmp_path / 'a.py'
    path.write_text(source)
    assert imported_modules('p.a', str(path), known) == {'p.b', 'p.c',
                                                         'p.sub.d'}
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}, 'e': set()}
    assert cycles(graph) == [['a', 'b', 'c']]
    assert cycles({'a': {'b'}, 'b': set()}) == []
