"""The package's metadata holds together: the Apache-2.0 text ships as LICENSE (in the sdist,
the wheel and the image), the classifiers match ``python_requires`` and the tools' target
version, and the linters are pinned to the versions that run."""

from __future__ import annotations

import configparser
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg")
    return parser


def listed(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def test_the_license_file_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    words = " ".join(text.split())

    assert words.startswith("Apache License Version 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in words
    assert "END OF TERMS AND CONDITIONS" in words
    assert "APPENDIX: How to apply the Apache License to your work." in words


def test_the_metadata_declares_and_ships_the_license() -> None:
    metadata = setup_cfg()["metadata"]

    assert metadata["license"] == "Apache-2.0"
    assert listed(metadata["license_files"]) == ["LICENSE"]
    assert "License :: OSI Approved :: Apache Software License" in listed(metadata["classifiers"])
    # The image installs the package from the source tree: the file must be in its context.
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^COPY [^\n]*\bLICENSE\b", dockerfile, re.MULTILINE)
    assert "!LICENSE" in (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()


def test_python_versions_agree() -> None:
    cfg = setup_cfg()
    minimum = re.fullmatch(r">=\s*3\.(\d+)", cfg["options"]["python_requires"].strip())
    assert minimum, cfg["options"]["python_requires"]
    lowest = int(minimum.group(1))
    minors = sorted(
        int(m.group(1))
        for c in listed(cfg["metadata"]["classifiers"])
        if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    )
    # tomllib is 3.11+: the one line is read as text.
    ruff = re.search(
        r'^target-version\s*=\s*"(\w+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE
    )

    assert minors and minors[0] == lowest
    assert minors == list(range(lowest, minors[-1] + 1)), "a gap in the Python classifiers"
    assert cfg["mypy"]["python_version"] == f"3.{lowest}"
    assert ruff and ruff.group(1) == f"py3{lowest}"


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_linters_are_pinned_to_the_versions_that_run(tool: str) -> None:
    dev = listed(setup_cfg()["options.extras_require"]["dev"])
    pins = {m.group(1): m.group(2) for r in dev if (m := re.fullmatch(r"([\w-]+)==(\S+)", r))}

    assert tool in pins, f"{tool} is not pinned exactly in the dev extra: {dev}"
    try:
        installed = version(tool)
    except PackageNotFoundError:
        pytest.skip(f"{tool} is not installed here")
    assert installed == pins[tool], f"run `pip install -e '.[dev]'`: {tool} {installed} here"
