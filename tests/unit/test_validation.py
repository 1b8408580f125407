"""Each validation rule passes good content and can fail on bad content."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bookgen_worker.content import validation
from bookgen_worker.content.generators import OfflineGenerator, sources_of, write_chapter, write_section
from bookgen_worker.errors import InvalidInput

GEN = OfflineGenerator()
GOOD_SOURCES = [
    "Eve Curie, Madame Curie (1937). Doubleday",
    "Barbara Goldsmith, Obsessive Genius (2005). https://wwnorton.com",
    "Susan Quinn, Marie Curie: A Life (1995). Simon & Schuster",
]


def book(chapters: int = 3, words: int = 300) -> dict[str, Any]:
    written = [write_chapter(GEN, "Marie Curie", n, None, words) for n in range(1, chapters + 1)]
    titles = [chapter["title"] for chapter in written]
    return {
        "subject": "Marie Curie",
        "introduction": write_section(GEN, "introduction", "Marie Curie", titles, 150),
        "chapters": written,
        "conclusion": write_section(GEN, "conclusion", "Marie Curie", titles, 150),
        "sources": sources_of(written),
    }


# --- chapter length -------------------------------------------------------------------------------

def test_length_within_tolerance_is_valid_and_outside_is_not() -> None:
    chapter = {"text": "word " * 100}
    assert validation.chapter_length(chapter, 100)["valid"]
    assert validation.chapter_length(chapter, 120, 0.2)["valid"]
    short = validation.chapter_length(chapter, 200, 0.2)
    assert not short["valid"] and short["word_count"] == 100 and "too short" in short["message"]
    long = validation.chapter_length(chapter, 50, 0.2)
    assert not long["valid"] and "too long" in long["message"]


@pytest.mark.parametrize(("chapter", "target", "tolerance", "field"), [
    ({"text": "x"}, 0, 0.2, "target_words"),
    ({"text": "x"}, -3, 0.2, "target_words"),
    ({"text": "x"}, 10, 1.5, "tolerance"),
    ({"title": "no text"}, 10, 0.2, "text"),
])
def test_length_bad_arguments(chapter: dict[str, Any], target: int, tolerance: float, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        validation.chapter_length(chapter, target, tolerance)


# --- sources --------------------------------------------------------------------------------------

def test_good_sources_pass() -> None:
    assert validation.sources(GOOD_SOURCES) == {"valid": True, "count": 3, "errors": []}


def test_malformed_source_fails() -> None:
    result = validation.sources([*GOOD_SOURCES, "just a title"])
    assert not result["valid"] and result["count"] == 3
    assert "source 4" in result["errors"][0] and "Author, Title (Year)" in result["errors"][0]


def test_implausible_year_fails() -> None:
    result = validation.sources([*GOOD_SOURCES, "A B, Future Book (3999). Nowhere"])
    assert not result["valid"] and "implausible year 3999" in result["errors"][0]


def test_duplicate_source_fails_even_with_other_case_and_spacing() -> None:
    result = validation.sources([*GOOD_SOURCES, GOOD_SOURCES[0].upper().replace(" ", "  ")])
    assert not result["valid"] and "duplicates source 1" in result["errors"][0]


def test_too_few_sources_fails() -> None:
    result = validation.sources(GOOD_SOURCES[:2], min_count=3)
    assert not result["valid"] and "at least 3" in result["errors"][-1]
    assert validation.sources(GOOD_SOURCES[:2], min_count=2)["valid"]


def test_sources_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="sources"):
        validation.sources("not a list")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="min_count"):
        validation.sources(GOOD_SOURCES, min_count=-1)


# --- content quality ------------------------------------------------------------------------------

def test_generated_prose_passes_quality() -> None:
    result = validation.content_quality(write_chapter(GEN, "Marie Curie", 1, None, 1000)["text"])
    assert result == {"valid": True, "issues": [], "score": 1.0}


def test_repeated_sentences_fail() -> None:
    text = "\n\n".join(["She worked in the laboratory every single day of the year."] * 12)
    result = validation.content_quality(text)
    assert not result["valid"] and any("repeats" in issue for issue in result["issues"])
    assert result["score"] < 1


def test_one_dominant_word_fails() -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    text = " ".join(f"Radium radium radium and {word} radium." for word in words)
    result = validation.content_quality(text)
    assert any("'radium'" in issue for issue in result["issues"])


def test_wall_of_text_fails() -> None:
    text = write_chapter(GEN, "Marie Curie", 1, None, 600)["text"].replace("\n\n", " ")
    result = validation.content_quality(text)
    assert not result["valid"] and any("single paragraph" in issue for issue in result["issues"])


def test_sentence_length_rules_fail() -> None:
    choppy = " ".join(f"Day {n}." for n in range(80))
    assert any("very short" in issue for issue in validation.content_quality(choppy)["issues"])
    run_on = " ".join(f"word{n}" for n in range(150)) + "."
    issues = validation.content_quality(run_on)["issues"]
    assert any("very long" in issue for issue in issues) and any("150 words" in issue for issue in issues)


def test_too_short_text_fails_and_non_text_is_rejected() -> None:
    assert not validation.content_quality("Too short.")["valid"]
    with pytest.raises(InvalidInput, match="text"):
        validation.content_quality(None)


# --- complete biography ---------------------------------------------------------------------------

def test_complete_biography_is_valid_with_totals() -> None:
    biography = book()
    result = validation.complete_biography(biography, target_words=300)
    assert result["valid"], result["errors"]
    expected = sum(len(part["text"].split()) for part in
                   [biography["introduction"], *biography["chapters"], biography["conclusion"]])
    assert result["total_words"] == expected and result["chapter_count"] == 3


def _broken(change: Any) -> dict[str, Any]:
    biography = copy.deepcopy(book())
    change(biography)
    return validation.complete_biography(biography)


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b.pop("introduction"), "introduction is missing"),
    (lambda b: b["conclusion"].update(text=""), "conclusion is empty"),
    (lambda b: b.update(chapters=[]), "chapters are missing"),
    (lambda b: b["chapters"].pop(1), "missing [2]"),
    (lambda b: b["chapters"][2].update(number=1), "repeated [1]"),
    (lambda b: b["chapters"][0].update(text="  "), "chapter 1 is empty"),
    (lambda b: b.update(sources=[]), "sources are missing"),
    (lambda b: b.update(sources=b["sources"][:1]), "not in the biography's sources"),
    (lambda b: b.update(subject=""), "subject"),
])
def test_each_biography_rule_can_fail(change: Any, message: str) -> None:
    result = _broken(change)
    assert not result["valid"]
    assert any(message in error for error in result["errors"]), result["errors"]


def test_chapter_far_from_target_fails_the_biography() -> None:
    result = validation.complete_biography(book(words=300), target_words=1000)
    assert not result["valid"] and "far from the target 1000" in result["errors"][0]


def test_biography_that_is_not_a_dict_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="biography"):
        validation.complete_biography(["not", "a", "dict"])
