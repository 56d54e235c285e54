"""Every code example in README.md runs as written.

The Python and shell blocks are taken from README.md and run from a scratch folder that holds the
repository's ``demo/`` (so their paths read as from the repository root, and what they write lands in the
scratch folder); the ``gradio_client`` block calls the app served in this test session. A block that needs
what a test cannot have (the network, a Hub token, an interactive server) carries a mark on the line before
it, ``<!-- readme-test: skip (why) -->``; the two install commands carry ``<!-- readme-test: install … -->``
and are compared with what ``.ci/run`` runs. The list of marked blocks is fixed below, so that no block is
left out silently.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RUN_LANGUAGES = ("python", "bash", "sh", "shell")
MARK = re.compile(r"^<!-- readme-test: (skip|install) \((.+)\) -->$")
SERVED_URL = "http://127.0.0.1:7860/"  # where README's client snippet expects `python app.py`

# (kind, first line) of every marked block, in README order.
MARKED = [
    ("install", "pip install torch==2.14.1 torchvision==0.29.1 setuptools wheel && SAM2_BUILD_CUDA=0 pip"),
    ("install", "pip install torch==2.14.1 torchvision==0.29.1 setuptools wheel && SAM2_BUILD_CUDA=0 pip"),
    ("skip", 'predictor = RS2SAM2Predictor.from_pretrained("ReeF2025/RS2-SAM2", subfolder="rrsisd")'),
    ("skip", "pip install jupyterlab && jupyter lab notebooks/"),
    ("skip", "rs2sam2 convert ReeF2025/RS2-SAM2 out/rrsisd --subfolder rrsisd --dtype bfloat16"),
]
# What the shell block of the `rs2sam2` command section leaves in its working folder.
CLI_OUTPUTS = ("mask.png", "masks", "data/synth/manifest.jsonl", "runs/x/best/config.json", "m.json")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    mark: tuple[str, str] | None  # (kind, reason)

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0]

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.language}"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of ``text`` (language, code, line, the mark on the line before, if any)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language, start = lines[i][3:].strip(), i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            previous = lines[i - 1].strip() if i else ""
            match = MARK.match(previous)
            mark = (match.group(1), match.group(2)) if match else None
            blocks.append(Block(language, "\n".join(lines[start + 1 : end]) + "\n", start + 1, mark))
            i = end
        i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.language in RUN_LANGUAGES and b.mark is None]


def test_the_marked_blocks_are_exactly_these():
    marked = [(b.mark[0], b.first_line) for b in BLOCKS if b.mark]
    assert [kind for kind, _ in marked] == [kind for kind, _ in MARKED]
    for (_, line), (_, expected) in zip(marked, MARKED):
        assert line.startswith(expected)
    # every mark sits right before a block (none is left dangling), and only code blocks are marked
    text = README.read_text(encoding="utf-8")
    assert len(re.findall(r"<!-- readme-test:", text)) == len(MARKED)
    assert all(b.language in RUN_LANGUAGES for b in BLOCKS if b.mark)
    # blocks in other languages are not code to run: the pipeline diagram, the citation, the package tree
    assert sorted(b.language for b in BLOCKS if b.language not in RUN_LANGUAGES) == ["", "bibtex", "text"]


def test_readme_runs_python_and_shell_blocks():
    assert [b.language for b in RUNNABLE] == ["python", "python", "bash"]


def test_install_commands_are_what_ci_runs():
    app, suite = (b.code.strip() for b in BLOCKS if b.mark and b.mark[0] == "install")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert suite == ci
    assert suite.endswith(" && python -m pytest -q") and " -r requirements-test.txt" in suite
    assert app == suite.replace(" -r requirements-test.txt", "").replace(
        "python -m pytest -q", "python app.py"
    )


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    """A scratch folder with the repository's demo/ in it, as the working directory."""
    (tmp_path / "demo").symlink_to(REPO / "demo", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.language == "python"], ids=lambda b: b.id)
def test_python_block_runs(block: Block, workdir: Path, request, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = block.code
    if "gradio_client" in code:
        assert code.count(SERVED_URL) == 1
        code = code.replace(SERVED_URL, request.getfixturevalue("served_app"))
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{block.line + 1}", "exec"), namespace)
    result = namespace["result"]
    if "gradio_client" in code:
        assert len(result) == 9 and Path(result[6]).is_file()  # the outputs, the mask PNG among them
    else:
        assert result.mask.dtype.name == "bool" and result.mask.ndim == 2


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.language != "python"], ids=lambda b: b.id)
def test_shell_block_runs(block: Block, workdir: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if block.first_line.startswith("rs2sam2 predict"):
        missing = [name for name in CLI_OUTPUTS if not (workdir / name).exists()]
        assert not missing, f"not written: {missing}\n{done.stdout[-2000:]}"
        assert any((workdir / "masks").iterdir())
