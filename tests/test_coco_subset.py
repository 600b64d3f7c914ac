"""tools/coco_subset.py and the functions behind it, for annotation and
results files."""
import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from sapool_mmdet.datasets import (COCO2017_CATEGORIES, DRIVING_CLASSES,
                                   CocoFormatError, load_coco_json,
                                   subset_coco, subset_coco_file,
                                   subset_results, subset_results_file)
from sapool_mmdet.fileio import atomic_open

CATEGORY_IDS = {c['name']: c['id'] for c in COCO2017_CATEGORIES}
TOOL = str(Path(__file__).resolve().parents[1] / 'tools' / 'coco_subset.py')


def run_tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [TOOL, *map(str, args)])
    runpy.run_path(TOOL, run_name='__main__')


def read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def test_default_subset_keeps_driving_classes_and_ids(tmp_path,
                                                      driving_coco_file):
    out = tmp_path / 'out' / 'driving.json'
    summary = subset_coco_file(driving_coco_file, str(out))
    subset = read(out)
    assert [c['id'] for c in subset['categories']] == sorted(
        CATEGORY_IDS[name] for name in DRIVING_CLASSES)
    assert {c['name'] for c in subset['categories']} == set(DRIVING_CLASSES)
    # 205 (stop sign) and 613 (nothing) have no driving annotation; 409
    # has a crowd of people, which is a person annotation.
    assert [img['id'] for img in subset['images']] == [101, 307, 409, 512]
    assert [ann['id'] for ann in subset['annotations']] == [
        1001, 1002, 1004, 1005, 1006, 1007, 1008
    ]
    assert subset['info'] == dict(description='hand-made test file')
    assert subset['licenses'] == [dict(id=1, name='test licence')]

    counts = {c.name: (c.category_id, c.images, c.instances, c.crowd)
              for c in summary.classes}
    assert list(counts) == list(DRIVING_CLASSES)
    assert counts['person'] == (1, 3, 3, 2)
    assert counts['car'] == (3, 1, 1, 0)
    assert counts['traffic light'] == (10, 1, 1, 0)
    assert counts['train'] == (7, 0, 0, 0)
    assert (summary.before.categories, summary.before.images,
            summary.before.annotations) == (80, 6, 9)
    assert (summary.after.categories, summary.after.images,
            summary.after.annotations) == (8, 4, 7)


def test_keep_empty_keeps_every_image(tmp_path, driving_coco_file):
    out = tmp_path / 'driving.json'
    summary = subset_coco_file(driving_coco_file, str(out), keep_empty=True)
    assert [img['id'] for img in read(out)['images']] == [
        101, 205, 307, 409, 512, 613
    ]
    assert summary.after.images == 6


def test_other_classes_in_any_order(driving_coco):
    subset, summary = subset_coco(driving_coco, ['stop sign', 'car'])
    assert [c.name for c in summary.classes] == ['stop sign', 'car']
    # categories keep the file's order and ids
    assert [c['id'] for c in subset['categories']] == [3, 13]
    assert [img['id'] for img in subset['images']] == [101, 205]
    assert [ann['id'] for ann in subset['annotations']] == [1002, 1003]


def test_table_lists_counts_and_totals(driving_coco):
    _, summary = subset_coco(driving_coco)
    table = summary.table()
    for heading in ('class', 'images', 'instances', 'crowd', 'before',
                    'after', 'traffic light'):
        assert heading in table
    assert table.splitlines()[0].startswith('+kept classes')


def test_unknown_class_names_the_file_classes(tmp_path, driving_coco_file):
    out = tmp_path / 'driving.json'
    with pytest.raises(ValueError) as error:
        subset_coco_file(driving_coco_file, str(out), ['car', 'tram'])
    assert "'tram'" in str(error.value)
    assert "'toothbrush'" in str(error.value)
    assert not out.exists()


IMAGE = '{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}'
CAR = '{"id": 3, "name": "car"}'


@pytest.mark.parametrize('content, message', [
    ('{"images": [', 'is not valid JSON'),
    ('[1, 2]', 'holds a JSON object'),
    ('{"images": [], "annotations": []}', "no ['categories']"),
    ('{"images": {}, "annotations": [], "categories": []}',
     '"images" must be a list'),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}',
     "images[0] must be an object with the keys ['id', 'file_name', "
     "'width', 'height']"),
    ('{"images": [' + IMAGE + '], "annotations": [{"id": 1, "image_id": 1}], '
     '"categories": []}', 'annotations[0] must be an object'),
    ('{"images": [' + IMAGE + '], "categories": [' + CAR + '], '
     '"annotations": [{"id": 7, "image_id": 2, "category_id": 3, '
     '"bbox": [1, 2, 3, 4]}]}', 'annotation 7 refers to image 2'),
    ('{"images": [' + IMAGE + '], "categories": [' + CAR + '], '
     '"annotations": [{"id": 7, "image_id": 1, "category_id": 4, '
     '"bbox": [1, 2, 3, 4]}]}',
     'annotation 7 has the category id 4, which is not in "categories"'),
    ('{"images": [' + IMAGE + '], "categories": [' + CAR + '], '
     '"annotations": [{"id": 7, "image_id": 1, "category_id": 3, '
     '"bbox": [1, 2, -3, 4]}]}', 'annotation 7 has a malformed bbox'),
])
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    with pytest.raises(CocoFormatError, match=message.replace('[', r'\[')):
        subset_coco_file(str(path), str(tmp_path / 'out.json'))
    assert not (tmp_path / 'out.json').exists()


def test_unreadable_files(tmp_path):
    with pytest.raises(CocoFormatError, match='cannot read'):
        load_coco_json(str(tmp_path / 'missing.json'))
    with pytest.raises(CocoFormatError, match='cannot read'):
        load_coco_json(str(tmp_path))
    binary = tmp_path / 'binary.json'
    binary.write_bytes(b'\xff\xfe\x00')
    with pytest.raises(CocoFormatError, match='not valid JSON'):
        load_coco_json(str(binary))


def test_refuses_to_overwrite_its_input(tmp_path, driving_coco_file):
    before = Path(driving_coco_file).read_bytes()
    link = tmp_path / 'link.json'
    os.symlink(driving_coco_file, link)
    for out in (driving_coco_file, str(link)):
        with pytest.raises(ValueError, match='refusing to overwrite'):
            subset_coco_file(driving_coco_file, out)
    assert Path(driving_coco_file).read_bytes() == before


def test_atomic_open_leaves_no_partial_file(tmp_path):
    target = tmp_path / 'file.json'
    target.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_open(str(target)) as f:
            f.write('partial')
            raise RuntimeError('interrupted')
    assert target.read_text() == 'old'
    with atomic_open(str(target)) as f:
        f.write('new')
    assert target.read_text() == 'new'
    assert os.listdir(tmp_path) == ['file.json']
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_command_line(tmp_path, driving_coco_file, monkeypatch, capsys):
    out = tmp_path / 'driving.json'
    run_tool(monkeypatch, driving_coco_file, out, '--classes', 'car',
             'traffic light', '--keep-empty')
    printed = capsys.readouterr().out
    assert 'traffic light' in printed and f'wrote {out}' in printed
    subset = read(out)
    assert [c['name'] for c in subset['categories']] == [
        'car', 'traffic light'
    ]
    assert len(subset['images']) == 6
    assert sorted(os.listdir(tmp_path)) == ['driving.json', 'instances.json']


@pytest.mark.parametrize('args, message', [
    (['--classes', 'tram'], "no category named 'tram'"),
    (['--classes', 'car', 'car'], 'unique'),
])
def test_command_line_errors(tmp_path, driving_coco_file, monkeypatch, args,
                             message):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, driving_coco_file, tmp_path / 'out.json', *args)
    assert str(exit_info.value).startswith('error: ')
    assert message in str(exit_info.value)


def test_command_line_refuses_its_input(driving_coco_file, monkeypatch):
    with pytest.raises(SystemExit, match='refusing to overwrite'):
        run_tool(monkeypatch, driving_coco_file, driving_coco_file)


def test_large_file_in_one_pass(tmp_path):
    """A file shaped like instances_train2017.json, at a tenth of its image
    count, checked against a direct count."""
    rng = np.random.default_rng(0)
    num_images, num_annotations = 12000, 90000
    category_ids = np.array([c['id'] for c in COCO2017_CATEGORIES])
    ann_categories = rng.choice(category_ids, num_annotations)
    ann_images = rng.integers(1, num_images + 1, num_annotations)
    coco = dict(
        info={},
        licenses=[],
        images=[
            dict(id=i, file_name=f'{i:012d}.jpg', width=640, height=480)
            for i in range(1, num_images + 1)
        ],
        annotations=[
            dict(id=k + 1, image_id=int(image_id), category_id=int(cat_id),
                 bbox=[1.0, 2.0, 30.0, 40.0], area=1200.0, iscrowd=0,
                 segmentation=[[1, 2, 31, 2, 31, 42, 1, 42]])
            for k, (image_id, cat_id) in enumerate(
                zip(ann_images, ann_categories))
        ],
        categories=COCO2017_CATEGORIES)
    in_json = str(tmp_path / 'big.json')
    with open(in_json, 'w', encoding='utf-8') as f:
        json.dump(coco, f)
    summary = subset_coco_file(in_json, str(tmp_path / 'small.json'))

    driving_ids = np.array([CATEGORY_IDS[name] for name in DRIVING_CLASSES])
    keep = np.isin(ann_categories, driving_ids)
    assert summary.after.annotations == int(keep.sum())
    assert summary.after.images == len(np.unique(ann_images[keep]))
    for count in summary.classes:
        of_class = ann_categories == count.category_id
        assert count.instances == int(of_class.sum())
        assert count.images == len(np.unique(ann_images[of_class]))


def detections_on(driving_coco):
    """One detection per annotation of driving_coco."""
    return [
        dict(image_id=ann['image_id'], category_id=ann['category_id'],
             bbox=ann['bbox'], score=0.5, id_hint=ann['id'])
        for ann in driving_coco['annotations']
    ]


def test_results_subset_keeps_ids_and_fields(driving_coco):
    detections = detections_on(driving_coco)
    kept, summary = subset_results(detections, driving_coco['categories'],
                                   ['car', 'person'])
    assert [d['id_hint'] for d in kept] == [1001, 1002, 1005, 1006]
    assert all(d is detections[i] for d, i in zip(kept, (0, 1, 4, 5)))
    assert [(c.name, c.category_id, c.images, c.detections)
            for c in summary.classes] == [('car', 3, 1, 1),
                                          ('person', 1, 3, 3)]
    assert (summary.before, summary.after) == (9, 4)
    table = summary.table()
    assert '| dropped' in table and '| 5' in table


def test_results_on_ids_the_ground_truth_lacks_are_refused(
        tmp_path, driving_coco, driving_coco_file):
    """As tools/eval_driving.py refuses them: label indices written as
    category ids (0) or results of another file (91, an unknown image)
    would otherwise vanish from the subset without a word."""
    detections = detections_on(driving_coco) + [
        dict(image_id=101, category_id=0, bbox=[1, 2, 3, 4], score=0.1),
        dict(image_id=613, category_id=91, bbox=[1, 2, 3, 4], score=0.1)]
    with pytest.raises(CocoFormatError, match=r'2 detections have category '
                       r'ids that the annotation file does not have: 0, 91'):
        subset_results(detections, driving_coco['categories'], ['car'])

    known_images = {img['id'] for img in driving_coco['images']}
    stray = dict(detections_on(driving_coco)[0],
                 image_id=max(known_images) + 1)
    in_json = tmp_path / 'res.json'
    in_json.write_text(json.dumps(detections_on(driving_coco) + [stray]))
    out = tmp_path / 'out.json'
    with pytest.raises(CocoFormatError, match=rf'1 detection\(s\) on 1 image '
                       rf'id\(s\) that .* does not have \(first: '
                       rf'{stray["image_id"]}\)'):
        subset_results_file(str(in_json), str(out), driving_coco_file)
    assert not out.exists()


def test_results_subset_file_and_command_line(tmp_path, driving_coco,
                                              driving_coco_file, monkeypatch,
                                              capsys):
    in_json = tmp_path / 'res.json'
    in_json.write_text(json.dumps(detections_on(driving_coco)))
    out = tmp_path / 'out' / 'driving.json'
    summary = subset_results_file(str(in_json), str(out), driving_coco_file)
    kept = read(out)
    assert [d['id_hint'] for d in kept] == [
        1001, 1002, 1004, 1005, 1006, 1007, 1008
    ]
    assert summary.after == 7

    run_tool(monkeypatch, in_json, tmp_path / 'tl.json', '--gt',
             driving_coco_file, '--classes', 'traffic light')
    assert [d['id_hint'] for d in read(tmp_path / 'tl.json')] == [1004]
    assert 'traffic light' in capsys.readouterr().out

    with pytest.raises(SystemExit, match='--keep-empty applies to '
                       'annotation files'):
        run_tool(monkeypatch, in_json, tmp_path / 'x.json', '--gt',
                 driving_coco_file, '--keep-empty')
    with pytest.raises(SystemExit, match='a COCO results file, not an '
                       'annotation file'):
        run_tool(monkeypatch, in_json, tmp_path / 'x.json')
    with pytest.raises(SystemExit, match='refusing to overwrite'):
        run_tool(monkeypatch, in_json, driving_coco_file, '--gt',
                 driving_coco_file)
    assert not (tmp_path / 'x.json').exists()


@pytest.mark.parametrize('content, message', [
    ('[{"image_id": 1, "category_id": 3', 'is not valid JSON'),
    ('[{"image_id": 1, "category_id": 3, "bbox": [1, 2], "score": 1}]',
     'malformed bbox'),
    ('{"annotations": []}', 'not a results file'),
])
def test_malformed_results_files(tmp_path, driving_coco_file, content,
                                 message):
    path = tmp_path / 'res.json'
    path.write_text(content)
    with pytest.raises(CocoFormatError, match=message):
        subset_results_file(str(path), str(tmp_path / 'out.json'),
                            driving_coco_file)
    assert not (tmp_path / 'out.json').exists()


def test_results_subset_unknown_class(driving_coco):
    with pytest.raises(ValueError, match="no category named 'tram'"):
        subset_results([], driving_coco['categories'], ['tram'])
