"""`rs2sam2 predict` hands its options to rs2sam2.geo.jobs by name: every JobOptions field is an argument."""

from __future__ import annotations

import dataclasses

from rs2sam2.cli import build_parser
from rs2sam2.geo.jobs import JobOptions


def test_every_job_option_is_a_predict_argument_with_the_same_default():
    args = build_parser().parse_args(["predict", "scene.tif", "the lake"])
    for f in dataclasses.fields(JobOptions):
        assert hasattr(args, f.name), f"rs2sam2 predict has no --{f.name.replace('_', '-')}"
        assert getattr(args, f.name) == f.default, f.name


def test_bands_are_1_based_on_the_command_line():
    args = build_parser().parse_args(["predict", "scene.tif", "x", "--bands", "4,3,2"])
    assert args.bands == (4, 3, 2)
