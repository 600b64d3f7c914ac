"""What ``pip install`` sees: version ranges that leave a user's own torch,
mmcv, mmengine and mmdet alone, mmcv or mmcv-lite as extras (either one
works), every third-party import declared, and the exact tested versions
kept apart in constraints.txt."""
import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = [Requirement(r) for r in metadata.requires('sapool_mmdet')]
BASE = {r.name.lower(): r for r in REQUIREMENTS if r.marker is None}
# the two mmcv distributions, one per extra: `pip install -e ".[lite]"`
MMCV = {r.name.lower(): r for r in REQUIREMENTS
        if r.name.lower() in ('mmcv', 'mmcv-lite')}
# imported only where present: the ops backend uses torchvision when its
# compiled ops load and plain PyTorch otherwise (sapool_mmdet/ops)
OPTIONAL_IMPORTS = {'torchvision'}


def installed_mmcv() -> str:
    """The distribution that provides the ``mmcv`` module here."""
    names = [d for d in ('mmcv', 'mmcv-lite') if _installed(d)]
    assert len(names) == 1, f'expected one of mmcv, mmcv-lite: {names}'
    return names[0]


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_stack_takes_ranges_and_no_build_specific_torch():
    stack = dict(BASE, **MMCV)
    for name in ('torch', 'mmcv', 'mmcv-lite', 'mmengine', 'mmdet'):
        spec = stack[name].specifier
        assert not any(s.operator in ('==', '===') for s in spec), spec
    assert not any('+' in str(r.specifier) for r in REQUIREMENTS)


def test_mmcv_is_an_extra_either_distribution():
    """pip cannot require one of two distributions: neither is a base
    requirement, each comes with its extra."""
    assert 'mmcv' not in BASE and 'mmcv-lite' not in BASE
    assert MMCV['mmcv'].marker.evaluate({'extra': 'full'})
    assert MMCV['mmcv-lite'].marker.evaluate({'extra': 'lite'})
    assert not MMCV['mmcv'].marker.evaluate({'extra': 'lite'})


@pytest.mark.parametrize('name,accepted,refused', [
    # user environments: CUDA torch builds, the mmcv builds mmdet 3.x takes
    ('torch', ['2.0.1', '2.1.2+cu121', '2.4.0+cu118', '2.13.0'], ['1.13.1']),
    ('mmcv', ['2.0.0rc4', '2.0.1', '2.1.0'], ['1.7.2', '2.2.0']),
    ('mmengine', ['0.7.1', '0.10.7'], ['0.6.0', '1.0.0']),
    ('mmdet', ['3.0.0', '3.3.0'], ['2.28.2', '4.0.0']),
])
def test_declared_ranges(name, accepted, refused):
    specs = [MMCV['mmcv'].specifier, MMCV['mmcv-lite'].specifier] \
        if name == 'mmcv' else [BASE[name].specifier]
    for spec in specs:
        for version in accepted:
            assert spec.contains(version, prereleases=True), (name, version)
        for version in refused:
            assert not spec.contains(version, prereleases=True), \
                (name, version)


def third_party_imports() -> dict:
    """Top-level module -> first file importing it, over the package and
    tools/ (absolute imports that are neither stdlib nor ours)."""
    found = {}
    files = sorted((ROOT / 'sapool_mmdet').rglob('*.py'))
    files += sorted((ROOT / 'tools').glob('*.py'))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and \
                        top != 'sapool_mmdet':
                    found.setdefault(top, path.relative_to(ROOT))
    return found


def test_every_third_party_import_is_declared():
    imports = third_party_imports()
    assert {'torch', 'mmcv', 'mmdet', 'PIL', 'terminaltables'} <= set(imports)
    declared = {re.sub(r'[-_.]+', '-', r.name).lower() for r in REQUIREMENTS}
    distributions = metadata.packages_distributions()
    for module, path in imports.items():
        if module in OPTIONAL_IMPORTS:
            continue
        names = {re.sub(r'[-_.]+', '-', d).lower()
                 for d in distributions.get(module, [])}
        assert names, f'{module} (imported in {path}) is not installed'
        assert names & declared, (
            f'{module} (imported in {path}) comes from {sorted(names)}, '
            f'which setup.py does not declare')


def test_constraints_pin_what_the_ranges_allow():
    """make install uses constraints.txt: one exact version per package,
    each inside the range setup.py declares."""
    pins = {}
    for line in (ROOT / 'constraints.txt').read_text().splitlines():
        line = line.split('#')[0].strip()
        if line:
            requirement = Requirement(line)
            operator, = {s.operator for s in requirement.specifier}
            assert operator == '==', line
            pins[requirement.name.lower()] = \
                next(iter(requirement.specifier)).version
    for name, requirement in BASE.items():
        if name == 'setuptools':  # pinned in the Makefile, see below
            continue
        assert name in pins, f'constraints.txt does not pin {name}'
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
        assert metadata.version(name).split('+')[0] == pins[name], name
    for name, requirement in MMCV.items():
        assert name in pins, f'constraints.txt does not pin {name}'
        assert requirement.specifier.contains(pins[name]), (name, pins[name])
    name = installed_mmcv()
    assert metadata.version(name).split('+')[0] == pins[name], name


def test_setuptools_range_fits_the_makefile_pin():
    """setuptools is pinned in the Makefile (openmim's dependencies ask for
    an old one, so constraints.txt cannot hold it): the declared range
    (mmengine needs pkg_resources, gone in 81) contains it."""
    makefile = (ROOT / 'Makefile').read_text()
    pin = re.search(r'^SETUPTOOLS := "(.+)"$', makefile, re.M).group(1)
    pinned = Requirement(pin).specifier
    declared = BASE['setuptools'].specifier
    installed = metadata.version('setuptools')
    assert pinned.contains(installed) and declared.contains(installed)
    assert not declared.contains('81.0.0') and not pinned.contains('81.0.0')


def test_pip_would_change_nothing_in_this_environment():
    """What a user with mmdet already installed sees: the package's
    requirements are met by what is there, nothing else is installed."""
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index',
         '--no-build-isolation', '--quiet', '--report', '-', '-e',
         str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    would_install = [item['metadata']['name'] for item in report['install']]
    assert would_install == ['sapool_mmdet'], would_install


def test_mmcv_ops_benchmark_times_every_op_on_every_backend():
    """tools/benchmark_mmcv_ops.py: the backends of sapool_mmdet.ops side by
    side, and the check that a faster mmcv build (MMCV_BUILD_FLAGS) does
    not slow the compiled ops we use."""
    from sapool_mmdet.analysis.mmcv_ops import (available_backends,
                                                benchmark_mmcv_ops)
    from sapool_mmdet.ops import get_mmcv_ops_backend
    backend = get_mmcv_ops_backend()
    backends = available_backends()
    assert backends[-1] == 'pytorch' and backend in backends
    rows = benchmark_mmcv_ops(min_run_time=0.01, max_run_time=0.05,
                              threads=1)
    ops = ['nms', 'roi_align', 'modulated_deform_conv2d fwd',
           'modulated_deform_conv2d fwd+bwd']
    assert [(r['backend'], r['op']) for r in rows] == [
        (b, op) for b in backends for op in ops]
    for row in rows:
        assert row['median_ms'] > 0 and row['iqr_ms'] >= 0
        assert row['runs'] >= 1 and row['threads'] == 1
    assert get_mmcv_ops_backend() == backend  # switched back
