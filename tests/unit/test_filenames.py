"""File names from user text stay inside the output folder, whatever the text (acceptance 7)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bookgen_worker.content.filenames import MAX_NAME_LENGTH, safe_path, sanitize_filename
from bookgen_worker.errors import PermanentError
from hypothesis import given, settings
from hypothesis import strategies as st

SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


@pytest.mark.parametrize(("text", "expected"), [
    ("Marie Curie", "Marie_Curie"),
    ("Frédéric Chopin", "Frederic_Chopin"),
    ("../../etc/passwd", "etc_passwd"),
    ("/etc/shadow", "etc_shadow"),
    ("..\\..\\windows\\system32", "windows_system32"),
    (".bashrc", "bashrc"),
    ("a..b", "a.b"),
    ("", "biography"),
    ("...", "biography"),
    ("毛泽东", "biography"),
    ("Ada Lovelace-1a2b3c4d", "Ada_Lovelace-1a2b3c4d"),
])
def test_sanitize_examples(text: str, expected: str) -> None:
    assert sanitize_filename(text) == expected


def test_long_names_are_capped() -> None:
    assert len(sanitize_filename("x" * 5000)) == MAX_NAME_LENGTH


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=400), suffix=st.sampled_from([".md", ".docx", ".pdf"]))
def test_any_text_gives_a_path_directly_inside_the_output_folder(tmp_path_factory: pytest.TempPathFactory,
                                                                 text: str, suffix: str) -> None:
    out = tmp_path_factory.getbasetemp() / "out"
    path = safe_path(out, text, suffix)
    assert path.parent == out.resolve()
    assert path.name.endswith(suffix)
    assert SAFE_NAME.match(path.name), path.name
    assert len(path.name) <= MAX_NAME_LENGTH + len(suffix)


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "~/x", "a/../../b", "\x00/..", "..", "."])
def test_hostile_text_lands_inside(tmp_path: Path, hostile: str) -> None:
    path = safe_path(tmp_path / "out", hostile, ".md")
    assert path.parent == (tmp_path / "out").resolve()


def test_suffix_is_not_doubled(tmp_path: Path) -> None:
    assert safe_path(tmp_path, "book.md", ".md").name == "book.md"
    assert safe_path(tmp_path, "book.md", ".pdf").name == "book.md.pdf"


def test_a_planted_symlink_cannot_redirect_the_write(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere.md"
    out.mkdir()
    (out / "trap.md").symlink_to(elsewhere)
    with pytest.raises(PermanentError, match="outside the output folder"):
        safe_path(out, "trap", ".md")
