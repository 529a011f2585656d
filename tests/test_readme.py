"""The README starts with the two commands a fresh machine needs; CI runs the second as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```\n(.+?)\n```", text, flags=re.MULTILINE | re.DOTALL)[:2]


def test_the_first_command_installs_only_what_the_demo_needs_and_runs_it() -> None:
    main_job, _ = commands()
    assert "'.[demo]'" in main_job and "[dev]" not in main_job
    assert main_job.endswith("green-callbacks demo")
    match = re.search(r"^demo = (.+)$", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match is not None
    demo = match.group(1)
    included = {e for group in re.findall(r"green-callbacks\[([^\]]+)\]", demo)
                for e in group.split(",")}  # fmt: skip
    assert included == {"lightning", "tensorboard"}  # no TensorFlow, transformers or MLflow


def test_ci_runs_the_readmes_test_command_as_written() -> None:
    _, tests = commands()
    assert tests.endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci
