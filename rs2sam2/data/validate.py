"""Dataset checks behind ``rs2sam2 data validate ROOT [--split S] [--json OUT]`` (:mod:`rs2sam2.cli.data`).

:func:`validate_dataset` reads any layout :func:`rs2sam2.data.readers.detect_layout` knows (manifest,
RRSIS-D, RefSegRS) and reports, per sample:

* ``missing_file`` – image, mask or index file (phrase file, refs pickle, instances.json) absent;
* ``unreadable_image`` / ``unreadable_mask`` – the file exists but cannot be decoded;
* ``missing_annotation`` – an RRSIS-D ref points at an image or annotation id absent from instances.json;
* ``unreadable_index`` – an index file that cannot be parsed (bad JSON, unsafe refs pickle, bad manifest);
* ``size_mismatch`` – mask (H, W) differs from the image size;
* ``empty_mask`` – the target mask has no foreground pixel;
* ``empty_expression`` – blank sentence; ``duplicate_id`` – two samples share an id.

Exit codes of the command: 0 clean, 1 problems found, 2 usage error (unknown layout, missing root, bad
split).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..images import read_rgb
from .manifest import SPLITS, read_manifest_samples
from .readers import detect_layout
from .refsegrs import RefSegRSReader
from .rrsisd import RRSISDReader, UnsafePickleError
from .samples import Sample


@dataclass
class Problem:
    """One finding: ``kind`` (see module docstring), a human-readable ``message``, and where."""

    kind: str
    message: str
    sample_id: str | None = None
    path: str | None = None


@dataclass
class ValidationReport:
    """Result of :func:`validate_dataset`. ``ok`` iff no problem was found."""

    root: str
    layout: str
    split: str | None
    num_samples: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Number of problems per kind."""
        return dict(Counter(p.kind for p in self.problems))

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "layout": self.layout,
            "split": self.split,
            "num_samples": self.num_samples,
            "ok": self.ok,
            "counts": self.counts(),
            "problems": [asdict(p) for p in self.problems],
        }

    def summary(self, max_problems: int = 50) -> str:
        head = (
            f"{self.root} ({self.layout}, split={self.split or 'all'}): {self.num_samples} samples, "
            f"{len(self.problems)} problem(s)"
        )
        lines = [head]
        for kind, n in sorted(self.counts().items()):
            lines.append(f"  {kind}: {n}")
        for p in self.problems[:max_problems]:
            where = p.sample_id or p.path or ""
            lines.append(f"  [{p.kind}] {where}: {p.message}")
        if len(self.problems) > max_problems:
            lines.append(f"  ... and {len(self.problems) - max_problems} more (see --json)")
        return "\n".join(lines)


def _read_index(report: ValidationReport, layout: str, path: Path, split: str | None) -> list[Sample]:
    """Read the samples, turning index-level failures into problems."""
    if layout == "manifest":
        try:
            return read_manifest_samples(path, split)
        except ValueError as e:
            report.problems.append(Problem("unreadable_index", str(e), path=str(path)))
            return []
    if layout == "rrsisd":
        try:
            return RRSISDReader(path).samples(split)
        except FileNotFoundError as e:
            report.problems.append(
                Problem("missing_file", f"index file missing: {e.filename}", path=e.filename)
            )
        except (UnsafePickleError, json.JSONDecodeError, ValueError, KeyError, TypeError) as e:
            kind = type(e).__name__
            report.problems.append(Problem("unreadable_index", f"{kind}: {e}", path=str(path)))
        return []
    reader = RefSegRSReader(path)
    samples: list[Sample] = []
    for sp in [split] if split is not None else list(SPLITS):
        phrase_file = reader.phrase_file(sp)
        if not phrase_file.is_file():
            report.problems.append(
                Problem("missing_file", f"phrase file for split {sp!r} missing", path=str(phrase_file))
            )
            continue
        samples.extend(reader.samples(sp))
    return samples


def _check_image(path: Path) -> tuple[tuple[int, int] | None, Problem | None]:
    if not path.is_file():
        return None, Problem("missing_file", "image file missing", path=str(path))
    try:
        im = read_rgb(path, exif_transpose=False)
    except Exception as e:  # any decoder failure means "unreadable"
        return None, Problem("unreadable_image", f"cannot decode image: {e}", path=str(path))
    return (im.height, im.width), None


def validate_samples(samples: list[Sample], report: ValidationReport) -> ValidationReport:
    """Check every sample's files, sizes and mask content, appending problems to ``report``."""
    image_cache: dict[Path, tuple[tuple[int, int] | None, Problem | None]] = {}
    seen_ids: set[str] = set()
    for s in samples:
        report.num_samples += 1
        if s.id in seen_ids:
            report.problems.append(Problem("duplicate_id", "sample id used more than once", sample_id=s.id))
        seen_ids.add(s.id)
        if not s.expression.strip():
            report.problems.append(Problem("empty_expression", "blank referring expression", sample_id=s.id))

        img_path = Path(s.image_path)
        if img_path not in image_cache:
            image_cache[img_path] = _check_image(img_path)
            if image_cache[img_path][1] is not None:  # report each bad image once
                problem = image_cache[img_path][1]
                assert problem is not None
                problem.sample_id = s.id
                report.problems.append(problem)
        img_size = image_cache[img_path][0]

        if s.mask_path is not None and not Path(s.mask_path).is_file():
            report.problems.append(Problem("missing_file", "mask file missing", s.id, str(s.mask_path)))
            continue
        try:
            mask = s.load_mask()
        except KeyError as e:
            report.problems.append(Problem("missing_annotation", f"id {e} not in the annotations", s.id))
            continue
        except Exception as e:  # any decoder failure means "unreadable"
            path = None if s.mask_path is None else str(s.mask_path)
            report.problems.append(Problem("unreadable_mask", f"cannot decode mask: {e}", s.id, path))
            continue
        if img_size is not None and tuple(mask.shape) != img_size:
            report.problems.append(
                Problem("size_mismatch", f"mask {tuple(mask.shape)} vs image {img_size} (H, W)", s.id)
            )
        if not mask.any():
            report.problems.append(Problem("empty_mask", "mask has no foreground pixel", s.id))
    return report


def validate_dataset(root: str | Path, split: str | None = None) -> ValidationReport:
    """Validate a dataset (manifest file/folder, RRSIS-D root or RefSegRS root).

    Args:
        root: path given to :func:`rs2sam2.data.readers.detect_layout`.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (all).

    Returns:
        a :class:`ValidationReport` (``report.ok`` when clean).

    Raises:
        FileNotFoundError / ValueError: ``root`` does not exist, has no known layout, or ``split`` is invalid.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    layout, path = detect_layout(root)
    report = ValidationReport(root=str(root), layout=layout, split=split)
    samples = _read_index(report, layout, path, split)
    return validate_samples(samples, report)
