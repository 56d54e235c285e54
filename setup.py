"""Build hook: the wheel carries the bundled default model and the demo examples.

Everything else about the package is in pyproject.toml. ``build_py`` copies the repository's
``demo/rs2sam2-tiny-synthetic/``, ``demo/examples.json`` and ``demo/examples/`` into the built package as
``rs2sam2/_bundled/demo/...`` (where :mod:`rs2sam2.weights.bundled` looks first). Editable installs skip
the copy and use the repository's ``demo/`` folder directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("demo/rs2sam2-tiny-synthetic", "demo/examples.json", "demo/examples")


class build_py_with_demo(build_py):  # noqa: N801 (setuptools command naming)
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "rs2sam2" / "_bundled"
        for name in BUNDLED:
            source = ROOT / name
            if not source.exists():
                raise FileNotFoundError(f"{source} is missing: the wheel must carry the bundled model")
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, destination)


setup(cmdclass={"build_py": build_py_with_demo})
