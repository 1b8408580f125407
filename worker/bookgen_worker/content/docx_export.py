"""The Word rendering (python-docx): title, a heading per part, paragraphs, a Sources section."""

from __future__ import annotations

from pathlib import Path

from docx import Document

from .biography import Book


def write_docx(book: Book, path: Path) -> None:
    document = Document()
    document.core_properties.title = book.subject
    document.add_heading(book.subject, level=0)
    document.add_paragraph("A biography")
    for section in filter(None, [book.introduction]):
        document.add_heading(section.title, level=1)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
    for chapter in book.chapters:
        document.add_heading(chapter.heading, level=1)
        for paragraph in chapter.paragraphs:
            document.add_paragraph(paragraph)
    for section in filter(None, [book.conclusion]):
        document.add_heading(section.title, level=1)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
    if book.sources:
        document.add_heading("Sources", level=1)
        for source in book.sources:
            document.add_paragraph(source, style="List Number")
    document.save(str(path))
