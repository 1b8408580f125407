"""`bookgen demo` from start to finish: the whole system up, one book, valid files, everything stopped."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import docx
import pypdf

from tests.local.conftest import BOOKGEN


def test_demo_writes_a_valid_book_and_stops_everything(tmp_path: Path) -> None:
    out = tmp_path / "books"
    result = subprocess.run(
        [BOOKGEN, "demo", "--chapters", "3", "--no-view", "--output-dir", str(out), "--timeout", "180",
         "--subject", "Grace Hopper"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^job \w+ COMPLETED", result.stdout, re.M)
    paths = dict(re.findall(r"^  (markdown|docx|pdf): (.+)$", result.stdout, re.M))
    assert set(paths) == {"markdown", "docx", "pdf"}
    for path in paths.values():
        assert Path(path).parent == out.resolve()

    markdown = Path(paths["markdown"]).read_text()
    assert markdown.startswith("# ") and "Grace Hopper" in markdown
    document = docx.Document(paths["docx"])
    assert any("Grace Hopper" in p.text for p in document.paragraphs)
    reader = pypdf.PdfReader(paths["pdf"])
    assert len(reader.pages) >= 1 and "Grace" in "".join(page.extract_text() for page in reader.pages)

    # The generator's default pace gives the content pool work to scale for: 3 chapters at once on
    # 2 slots per worker and 1 task per slot is 2 workers.
    assert re.search(r"^  autoscaled pool content: 1 -> [2-9]", result.stdout, re.M), result.stdout[-3000:]
    assert re.search(r"^stopped$", result.stdout, re.M)
    assert "killed after the grace period" not in result.stdout
    # The temporary state folder (Redis data, passwords) is removed after a successful demo.
    folder = re.search(r"^state folder (.+)$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    assert not Path(folder).exists()
