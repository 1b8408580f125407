"""The PDF rendering (reportlab platypus): title page, headings, paragraphs, "Page N" footers."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    ListFlowable,
    ListItem,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
)

from .biography import Book


def _footer(canvas: Canvas, document: BaseDocTemplate) -> None:
    canvas.saveState()
    canvas.setFont("Helvetica", 9)
    canvas.drawCentredString(A4[0] / 2, 1.5 * cm, f"Page {document.page}")
    canvas.restoreState()


def write_pdf(book: Book, path: Path) -> None:
    styles = getSampleStyleSheet()
    # Paragraph() reads a small markup language: user text is escaped so "<" or "&" cannot break it.
    story: list[Flowable] = [
        Spacer(1, 8 * cm),
        Paragraph(escape(book.subject), styles["Title"]),
        Paragraph("A biography", styles["Heading3"]),
        PageBreak(),
    ]

    def part(heading: str, paragraphs: list[str]) -> None:
        story.append(Paragraph(escape(heading), styles["Heading1"]))
        story.extend(Paragraph(escape(text), styles["BodyText"]) for text in paragraphs)

    if book.introduction:
        part(book.introduction.title, book.introduction.paragraphs)
    for chapter in book.chapters:
        part(chapter.heading, chapter.paragraphs)
    if book.conclusion:
        part(book.conclusion.title, book.conclusion.paragraphs)
    if book.sources:
        story.append(Paragraph("Sources", styles["Heading1"]))
        items = [ListItem(Paragraph(escape(source), styles["BodyText"])) for source in book.sources]
        story.append(ListFlowable(items, bulletType="1"))
    document = BaseDocTemplate(str(path), pagesize=A4, title=book.subject, author="BookGen",
                               topMargin=2 * cm, bottomMargin=2.5 * cm)
    frame = Frame(document.leftMargin, document.bottomMargin, document.width, document.height, id="body")
    # onPageEnd rather than onPage: the footer is drawn after the page's text, so text extraction
    # (pypdf, search indexes, screen readers) finds "Page N" at the foot of each page, where it is shown.
    document.addPageTemplates([PageTemplate(id="page", frames=[frame], onPageEnd=_footer)])
    document.build(story)
