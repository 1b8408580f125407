"""File names from user text stay inside the output folder, whatever the text (acceptance 7)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from bookgen_worker.content.exports import export
from bookgen_worker.content.filenames import MAX_NAME_LENGTH, job_file_stem, numbered, safe_path, sanitize_filename
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
    ("毛泽东", "MaoZeDong"),
    ("Владимир Набоков", "Vladimir_Nabokov"),
    ("Ελευθέριος Βενιζέλος", "Eleytherios_Venizelos"),
    ("محمد علي", "mhmd_ly"),
    ("🙂", "slight_smile"),
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


@pytest.mark.parametrize("subject", ["毛泽东", "Ada Lovelace", "x" * 500, "Å" * 300, "", "../.."])
def test_a_job_file_name_always_ends_with_the_whole_job_id(subject: str) -> None:
    job_id = "0123456789abcdef0123456789abcdef"
    stem = job_file_stem(subject, job_id)
    assert stem.endswith("-" + job_id)
    assert len(stem) <= MAX_NAME_LENGTH and SAFE_NAME.match(stem)
    assert sanitize_filename(stem) == stem  # the export task's own sanitising keeps it whole


def test_scripts_other_than_latin_give_different_readable_names() -> None:
    names = {sanitize_filename(s) for s in ("毛泽东", "孙中山", "Лев Толстой", "Фёдор Достоевский")}
    assert len(names) == 4 and "biography" not in names


def test_numbered_names_keep_their_number_even_at_the_length_limit(tmp_path: Path) -> None:
    long = tmp_path / ("y" * MAX_NAME_LENGTH + ".md")
    names = [p.name for p, _ in zip(numbered(long), range(12), strict=False)]
    assert names[0] == long.name and names[1].endswith("-2.md") and names[11].endswith("-12.md")
    assert all(len(name) <= MAX_NAME_LENGTH + len(".md") for name in names)


BOOK = {"subject": "Ada Lovelace", "chapters": [{"number": 1, "title": "One", "text": "Text."}]}


def test_an_export_never_replaces_an_existing_file_silently(tmp_path: Path) -> None:
    first = export(BOOK, "markdown", tmp_path, "same")
    (tmp_path / "same.md").write_text("someone else's book")
    second = export(BOOK, "markdown", tmp_path, "same")
    assert Path(first["path"]).name == "same.md" and Path(second["path"]).name == "same-2.md"
    assert (tmp_path / "same.md").read_text() == "someone else's book"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_overwrite_replaces_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "mine.md").write_text("old")
    again = export(BOOK, "markdown", tmp_path, "mine", overwrite=True)
    assert Path(again["path"]).name == "mine.md" and "Ada Lovelace" in (tmp_path / "mine.md").read_text()


def test_a_dangling_symlink_under_the_name_is_skipped_not_written_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "name.md").symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(PermanentError):  # safe_path refuses the name outright
        export(BOOK, "markdown", out, "name")
    assert not (tmp_path / "elsewhere.md").exists()
