"""Datasets: our JSONL manifest, the RRSIS-D and RefSegRS readers, checks, and the synthetic generator.

:mod:`.manifest` (our format) · :mod:`.rrsisd` · :mod:`.refsegrs` · :mod:`.readers` (detect any layout, read,
open, convert) · :mod:`.samples` (one sample, read on demand) · :mod:`.dataset` (the torch dataset, the
official occlusion augmentation) · :mod:`.validate` (dataset checks) · :mod:`.masks` (RLE, boxes, mask
images: the one home of mask encodings) · :mod:`.synthetic` (the procedural referring benchmark).
"""
