"""Markdown, Word and PDF exports: structure, readability with the real libraries, safety."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import docx
import pypdf
import pytest
from bookgen_worker.content.biography import parse_book
from bookgen_worker.content.exports import export, normalise_formats, render_markdown
from bookgen_worker.content.generators import OfflineGenerator, sources_of, write_chapter, write_section
from bookgen_worker.errors import InvalidInput

GEN = OfflineGenerator()


@pytest.fixture(scope="module")
def biography() -> dict[str, Any]:
    chapters = [write_chapter(GEN, "Ada Lovelace", n, None, 400) for n in range(1, 4)]
    titles = [chapter["title"] for chapter in chapters]
    return {
        "subject": "Ada Lovelace",
        "introduction": write_section(GEN, "introduction", "Ada Lovelace", titles, 150),
        "chapters": chapters,
        "conclusion": write_section(GEN, "conclusion", "Ada Lovelace", titles, 150),
        "sources": sources_of(chapters),
    }


def headings(biography: dict[str, Any]) -> list[str]:
    return ["Introduction", *(f"Chapter {c['number']}: {c['title']}" for c in biography["chapters"]),
            "Conclusion", "Sources"]


def test_markdown_structure(tmp_path: Path, biography: dict[str, Any]) -> None:
    result = export(biography, "markdown", tmp_path)
    path = Path(result["path"])
    assert result["format"] == "markdown" and path == tmp_path.resolve() / "Ada_Lovelace.md"
    text = path.read_text()
    assert result["bytes"] == path.stat().st_size
    assert text.splitlines()[0] == "# Ada Lovelace"
    assert re.findall(r"^## (.+)$", text, re.MULTILINE) == headings(biography)
    numbered = re.findall(r"^\d+\. (.+)$", text, re.MULTILINE)
    assert numbered == biography["sources"]
    first_paragraph = biography["chapters"][0]["text"].split("\n\n")[0]
    assert first_paragraph in text


def test_markdown_escapes_user_text_that_would_add_structure() -> None:
    book = parse_book({"subject": "Evil\n# Injected", "chapters": [{"number": 1, "title": "<script>", "text": "x"}]})
    text = render_markdown(book)
    assert "\n# Injected" not in text and "<script>" not in text


def test_word_opens_with_the_right_headings(tmp_path: Path, biography: dict[str, Any]) -> None:
    result = export(biography, "docx", tmp_path, filename="ada-book")
    assert result["format"] == "docx" and result["path"].endswith("ada-book.docx")
    document = docx.Document(result["path"])
    title = [p.text for p in document.paragraphs if p.style.name == "Title"]
    found = [p.text for p in document.paragraphs if p.style.name == "Heading 1"]
    assert title == ["Ada Lovelace"]
    assert found == headings(biography)
    body = [p.text for p in document.paragraphs if p.style.name == "Normal"]
    assert biography["chapters"][1]["text"].split("\n\n")[0] in body
    listed = [p.text for p in document.paragraphs if p.style.name == "List Number"]
    assert listed == biography["sources"]


def test_pdf_has_title_page_headings_and_page_numbers(tmp_path: Path, biography: dict[str, Any]) -> None:
    result = export(biography, "pdf", tmp_path)
    assert result["format"] == "pdf" and result["bytes"] > 1000
    reader = pypdf.PdfReader(result["path"])
    pages = [page.extract_text() for page in reader.pages]
    assert len(pages) >= 3
    assert "Ada Lovelace" in pages[0] and "Chapter 1" not in pages[0]  # a title page of its own
    for number, text in enumerate(pages, start=1):
        assert text.strip().splitlines()[-1].strip() == f"Page {number}"  # at the foot, where it is drawn
    everything = " ".join(" ".join(text.split()) for text in pages)
    for heading in headings(biography):
        assert heading in everything
    assert reader.metadata.title == "Ada Lovelace"


def test_text_with_markup_and_control_characters_exports(tmp_path: Path, biography: dict[str, Any]) -> None:
    tricky = copy.deepcopy(biography)
    tricky["subject"] = "A & B <i>unclosed"
    tricky["chapters"][0]["text"] += "\n\nNull \x00 and bell \x07 & <b> survive."
    for fmt in ("markdown", "docx", "pdf"):
        assert Path(export(tricky, fmt, tmp_path)["path"]).exists()
    assert "A & B <i>unclosed" in pypdf.PdfReader(tmp_path / "A_B_i_unclosed.pdf").pages[0].extract_text()


def test_hostile_subject_writes_inside_the_output_folder(tmp_path: Path, biography: dict[str, Any]) -> None:
    out = tmp_path / "out"
    hostile = {**biography, "subject": "../../etc/passwd"}
    for fmt in ("markdown", "docx", "pdf"):
        path = Path(export(hostile, fmt, out)["path"])
        assert path.parent == out.resolve()
    assert sorted(p.name for p in out.iterdir()) == ["etc_passwd.docx", "etc_passwd.md", "etc_passwd.pdf"]
    assert not (tmp_path / "etc").exists()


def test_rewrites_are_atomic_and_leave_no_temporary_files(tmp_path: Path, biography: dict[str, Any]) -> None:
    export(biography, "markdown", tmp_path)
    changed = {**biography, "chapters": biography["chapters"][:1]}
    export(changed, "markdown", tmp_path, overwrite=True)  # replacing a file is asked for, never silent
    assert [p.name for p in tmp_path.iterdir()] == ["Ada_Lovelace.md"]
    assert "Chapter 2" not in (tmp_path / "Ada_Lovelace.md").read_text()


def test_failed_render_leaves_nothing_behind(tmp_path: Path, biography: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from bookgen_worker.content import exports

    def boom(book: Any, path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    monkeypatch.setitem(exports.FORMATS, "markdown", (".md", boom))
    with pytest.raises(OSError, match="disk full"):
        export(biography, "markdown", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sections_may_be_empty(tmp_path: Path, biography: dict[str, Any]) -> None:
    partial = {**biography, "introduction": {"title": "Introduction", "text": "", "word_count": 0}}
    text = Path(export(partial, "markdown", tmp_path)["path"]).read_text()
    assert "## Introduction" not in text and "## Chapter 1" in text


@pytest.mark.parametrize(("change", "field"), [
    (lambda b: b.pop("subject"), "biography.subject"),
    (lambda b: b.update(subject="   "), "biography.subject"),
    (lambda b: b.pop("chapters"), "biography.chapters"),
    (lambda b: b["chapters"][1].pop("title"), r"biography.chapters\[1\].title"),
    (lambda b: b["chapters"][0].update(number=-1), r"biography.chapters\[0\].number"),
    (lambda b: b["chapters"][0].update(text=7), r"biography.chapters\[0\].text"),
    (lambda b: b.update(sources="nope"), "biography.sources"),
])
def test_malformed_biography_names_the_field(tmp_path: Path, biography: dict[str, Any], change: Any,
                                             field: str) -> None:
    broken = copy.deepcopy(biography)
    change(broken)
    with pytest.raises(InvalidInput, match=field):
        export(broken, "markdown", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_format_names() -> None:
    assert normalise_formats(None) == ["markdown", "docx", "pdf"]
    assert normalise_formats(["md", "Word", "pdf", "markdown"]) == ["markdown", "docx", "pdf"]
    with pytest.raises(InvalidInput, match="unknown export format 'rtf'"):
        normalise_formats(["rtf"])
    with pytest.raises(InvalidInput, match="formats"):
        normalise_formats([])
