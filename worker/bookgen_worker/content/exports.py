"""Writing a biography to Markdown, Word and PDF inside the output folder.

Every file is written to a temporary name in the output folder and renamed into place, so a reader
never sees half a file and a crash leaves no broken output behind. The file name comes from the
user's text only through `safe_path`, which keeps it inside the output folder. An existing file is
never replaced silently: a new export takes the next free name (`book-2.md`); only a caller that owns
the name (a job re-running its own export step) asks for `overwrite=True`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from .biography import Book, parse_book
from .filenames import numbered, safe_path, sanitize_filename

__all__ = ["FORMATS", "export", "normalise_formats", "render_markdown", "safe_path", "sanitize_filename"]


def render_markdown(book: Book) -> str:
    lines = [f"# {_md(book.subject)}", "", "*A biography*", ""]
    if book.introduction:
        lines += [f"## {_md(book.introduction.title)}", "", *_md_paragraphs(book.introduction.paragraphs)]
    for chapter in book.chapters:
        lines += [f"## {_md(chapter.heading)}", "", *_md_paragraphs(chapter.paragraphs)]
    if book.conclusion:
        lines += [f"## {_md(book.conclusion.title)}", "", *_md_paragraphs(book.conclusion.paragraphs)]
    if book.sources:
        lines += ["## Sources", "", *(f"{n}. {_md(source)}" for n, source in enumerate(book.sources, 1)), ""]
    return "\n".join(lines)


def _md(text: str) -> str:
    """Inline text that cannot open a heading, list or HTML block of its own."""
    return text.replace("\\", "\\\\").replace("<", "&lt;").replace("#", "\\#")


def _md_paragraphs(paragraphs: list[str]) -> list[str]:
    out: list[str] = []
    for paragraph in paragraphs:
        out += [_md(paragraph), ""]
    return out


def _write_markdown(book: Book, path: Path) -> None:
    path.write_text(render_markdown(book), encoding="utf-8")


def _write_docx(book: Book, path: Path) -> None:
    from .docx_export import write_docx  # heavy imports only where used

    write_docx(book, path)


def _write_pdf(book: Book, path: Path) -> None:
    from .pdf_export import write_pdf

    write_pdf(book, path)


#: format -> (suffix, writer)
FORMATS: dict[str, tuple[str, Callable[[Book, Path], None]]] = {
    "markdown": (".md", _write_markdown),
    "docx": (".docx", _write_docx),
    "pdf": (".pdf", _write_pdf),
}
ALIASES = {"md": "markdown", "markdown": "markdown", "docx": "docx", "word": "docx", "pdf": "pdf"}


def normalise_formats(formats: Any) -> list[str]:
    if formats is None:
        return list(FORMATS)
    if not isinstance(formats, list | tuple) or not formats:
        raise InvalidInput("formats must be a non-empty list such as ['markdown', 'docx', 'pdf']")
    chosen: list[str] = []
    for item in formats:
        name = ALIASES.get(item.lower()) if isinstance(item, str) else None
        if name is None:
            raise InvalidInput(f"unknown export format {item!r}; choose from md, markdown, docx, word, pdf")
        if name not in chosen:
            chosen.append(name)
    return chosen


def export(biography: Any, fmt: str, output_dir: Path | str, filename: Any = None,
           overwrite: bool = False) -> dict[str, Any]:
    """Write one format; returns {"format", "path", "bytes"} (the path actually written)."""
    if filename is not None and not isinstance(filename, str):
        raise InvalidInput(f"filename must be a string or null (got {type(filename).__name__})")
    book = parse_book(biography)
    suffix, writer = FORMATS[fmt]
    target = safe_path(output_dir, filename or book.subject, suffix)
    target = _atomic_write(target, lambda tmp: writer(book, tmp), overwrite=bool(overwrite))
    return {"format": fmt, "path": str(target), "bytes": target.stat().st_size}


def _atomic_write(target: Path, write: Callable[[Path], None], *, overwrite: bool) -> Path:
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem[:40]}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as done:
            os.fsync(done.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; exported books are meant to be read
        if overwrite:
            os.replace(tmp, target)
            return target
        return _link_to_free_name(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _link_to_free_name(tmp: Path, target: Path) -> Path:
    """Give the finished file the first free name: link() fails if the name exists (even as a dangling
    symlink), so two exports racing for one name can never replace each other."""
    root = target.parent
    for candidate in numbered(target):
        if candidate.resolve().parent != root:
            continue  # a symlink planted under this name: never written through
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            continue
        return candidate
    raise InvalidInput(f"too many files named like {target.name} in {root}; choose another file name")
