"""The README's "Connect your application" section, read by the tests that run what it shows (so the
page cannot drift from the product): its Python snippet, run as it is written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Connect your application"


def connect_section(readme: Path = README) -> str:
    text = readme.read_text()
    assert SECTION in text, f"{readme.name} has no section {SECTION!r}"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def connect_snippet(readme: Path = README) -> str:
    """The section's one Python block, exactly as written."""
    blocks = re.findall(r"```python\n(.*?)```", connect_section(readme), re.S)
    assert len(blocks) == 1, f"expected one python block in {SECTION!r}, found {len(blocks)}"
    return str(blocks[0])
