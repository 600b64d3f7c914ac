"""The detection report in the layout of Table 4 of Chen et al. (WACV 2023),
as text tables, Markdown and JSON."""
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

from terminaltables import AsciiTable

from ..fileio import atomic_open

__all__ = ['TABLE4_COLUMNS', 'ClassAP', 'DetectionReport']

# (CocoMetric result key, column heading), in the column order of Table 4.
TABLE4_COLUMNS: Tuple[Tuple[str, str], ...] = (
    ('bbox_mAP_50', '@0.5'),
    ('bbox_mAP_75', '@0.75'),
    ('bbox_mAP', '@[0.5,0.95]'),
    ('bbox_mAP_l', '@large'),
    ('bbox_mAP_m', '@medium'),
    ('bbox_mAP_s', '@small'),
)


def _percent(value: Optional[float]) -> str:
    """A COCO AP in percent; pycocotools marks 'no ground truth' with -1 (and
    CocoMetric a class without ground truth with NaN)."""
    if value is None or math.isnan(value) or value < 0:
        return 'n/a'
    return f'{100 * value:.1f}'


@dataclass
class ClassAP:
    """AP@[0.5,0.95] of one class and its non-crowd ground-truth count."""
    name: str
    category_id: int
    bbox_mAP: Optional[float]
    gt_instances: int


@dataclass
class DetectionReport:
    """What :class:`DrivingCocoMetric` reports after an evaluation.

    Args:
        summary (dict[str, float]): The six CocoMetric values of
            :data:`TABLE4_COLUMNS` (``bbox_mAP``, ``bbox_mAP_50``, ...), as
            fractions; -1 marks a size bucket without ground truth.
        per_class (list[ClassAP]): One entry per class, in label order.
        num_images (int): Images evaluated.
    """
    summary: Dict[str, float]
    per_class: List[ClassAP]
    num_images: int

    def _summary_rows(self) -> List[List[str]]:
        return [[''] + [heading for _, heading in TABLE4_COLUMNS],
                ['mAP (%)'] +
                [_percent(self.summary[key]) for key, _ in TABLE4_COLUMNS]]

    def _class_rows(self) -> List[List[str]]:
        return [['class', 'AP@[0.5,0.95] (%)', 'GT instances']] + [[
            c.name, _percent(c.bbox_mAP),
            str(c.gt_instances)
        ] for c in self.per_class]

    def as_dict(self) -> dict:
        """The JSON form: the CocoMetric keys, ``per_class`` and
        ``num_images``; a NaN AP becomes ``null``."""
        per_class = []
        for entry in map(asdict, self.per_class):
            if entry['bbox_mAP'] is not None and math.isnan(entry['bbox_mAP']):
                entry['bbox_mAP'] = None
            per_class.append(entry)
        return dict(
            **self.summary, per_class=per_class, num_images=self.num_images)

    def text(self) -> str:
        """Both tables as text, the Table 4 layout first."""
        summary = AsciiTable(self._summary_rows(),
                             f'COCO bbox mAP ({self.num_images} images)')
        per_class = AsciiTable(self._class_rows(), 'AP per class')
        return f'{summary.table}\n{per_class.table}'

    def markdown(self) -> str:
        """Both tables as Markdown."""

        def table(rows: List[List[str]]) -> str:
            lines = ['| ' + ' | '.join(rows[0]) + ' |',
                     '|' + '|'.join([' --- '] + [' ---: '] *
                                    (len(rows[0]) - 1)) + '|']
            lines += ['| ' + ' | '.join(row) + ' |' for row in rows[1:]]
            return '\n'.join(lines)

        return (f'## COCO bbox mAP ({self.num_images} images)\n\n'
                f'{table(self._summary_rows())}\n\n'
                f'## AP per class\n\n{table(self._class_rows())}\n')

    def write(self, report_dir: str,
              name: str = 'driving_metrics') -> Tuple[str, str]:
        """Write ``<report_dir>/<name>.json`` and ``<name>.md`` atomically.

        Args:
            report_dir (str): Folder; created if missing.
            name (str): File name without suffix.
                Defaults to 'driving_metrics'.

        Returns:
            tuple[str, str]: Paths of the JSON and the Markdown file.
        """
        os.makedirs(report_dir, exist_ok=True)
        json_path = os.path.join(report_dir, f'{name}.json')
        markdown_path = os.path.join(report_dir, f'{name}.md')
        with atomic_open(json_path, 'w', encoding='utf-8') as f:
            json.dump(self.as_dict(), f, indent=2)
            f.write('\n')
        with atomic_open(markdown_path, 'w', encoding='utf-8') as f:
            f.write(self.markdown())
        return json_path, markdown_path
