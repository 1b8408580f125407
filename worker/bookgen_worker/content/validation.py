"""Validators for chapters, sources, prose quality and whole biographies (pure functions).

Each returns a result dict: `valid` and what it found (a message, errors or issues, with the figures
checked). Arguments that are not what the task expects raise InvalidInput; content that is merely not
good enough is reported as `valid: False` with reasons.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import date
from typing import Any

from ..errors import InvalidInput
from .biography import check_target_words, count_words, paragraphs

#: "Author, Title (Year). URL-or-publisher"
SOURCE_PATTERN = re.compile(r"^(?P<author>[^,]+?), (?P<title>.+?) \((?P<year>\d{4})\)\. (?P<where>\S.*)$")
MIN_YEAR = 1000

# Content quality thresholds; each failed rule costs QUALITY_PENALTY of the score.
MIN_WORDS = 50
MIN_AVG_SENTENCE_WORDS = 5
MAX_AVG_SENTENCE_WORDS = 40
MAX_SENTENCE_WORDS = 100
WORDS_PER_PARAGRAPH_LIMIT = 300  # more words than this with a single paragraph = a wall of text
MAX_DUPLICATE_SENTENCE_RATIO = 0.2
MAX_TOP_WORD_SHARE = 0.1
QUALITY_PENALTY = 0.25
_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "had", "has", "have", "he", "her", "his",
    "in", "is", "it", "its", "of", "on", "or", "she", "that", "the", "their", "them", "they", "this", "to", "was",
    "were", "which", "who", "with",
))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _text_arg(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (got {type(value).__name__})")
    return value


def chapter_length(chapter: Any, target_words: Any, tolerance: Any = 0.2) -> dict[str, Any]:
    if not isinstance(chapter, Mapping) or "text" not in chapter:
        raise InvalidInput("chapter must be an object with a text field")
    text = _text_arg(chapter["text"], "chapter.text")
    target = check_target_words(target_words)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise InvalidInput(f"tolerance must be a number from 0 to below 1 (got {tolerance!r})")
    words = count_words(text)
    low, high = round(target * (1 - tolerance)), round(target * (1 + tolerance))
    valid = low <= words <= high
    if valid:
        message = f"{words} words, within {tolerance:.0%} of the target {target}"
    else:
        message = f"{words} words is {'too short' if words < low else 'too long'}: expected {low}..{high} " \
                  f"(target {target} ± {tolerance:.0%})"
    return {"valid": valid, "word_count": words, "target": target, "message": message}


def source_errors(source: str) -> list[str]:
    match = SOURCE_PATTERN.match(source.strip())
    if not match:
        return ["not in the form 'Author, Title (Year). URL-or-publisher'"]
    year = int(match["year"])
    if not MIN_YEAR <= year <= date.today().year + 1:
        return [f"implausible year {year}"]
    return []


def sources(value: Any, min_count: Any = 3) -> dict[str, Any]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("sources must be a list of strings")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 0:
        raise InvalidInput(f"min_count must be a whole number of at least 0 (got {min_count!r})")
    errors: list[str] = []
    seen: dict[str, int] = {}
    good = 0
    for index, source in enumerate(value, start=1):
        key = " ".join(source.lower().split())
        if key in seen:
            errors.append(f"source {index} duplicates source {seen[key]}: {source!r}")
            continue
        seen[key] = index
        problems = source_errors(source)
        errors.extend(f"source {index} {problem}: {source!r}" for problem in problems)
        good += not problems
    if good < min_count:
        errors.append(f"only {good} well-formed distinct source(s); at least {min_count} required")
    return {"valid": not errors, "count": good, "errors": errors}


def sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(" ".join(text.split())) if part.strip()]


def content_quality(text: Any) -> dict[str, Any]:
    text = _text_arg(text, "text")
    issues: list[str] = []
    words = count_words(text)
    if words < MIN_WORDS:
        issues.append(f"too short to judge: {words} words (at least {MIN_WORDS})")
    parts, found = paragraphs(text), sentences(text)
    if words > WORDS_PER_PARAGRAPH_LIMIT and len(parts) < 2:
        issues.append(f"{words} words in a single paragraph; split it with blank lines")
    if found:
        lengths = [count_words(sentence) for sentence in found]
        average = sum(lengths) / len(lengths)
        if average < MIN_AVG_SENTENCE_WORDS:
            issues.append(f"sentences are very short (average {average:.1f} words)")
        elif average > MAX_AVG_SENTENCE_WORDS:
            issues.append(f"sentences are very long (average {average:.1f} words)")
        if max(lengths) > MAX_SENTENCE_WORDS:
            issues.append(f"a sentence has {max(lengths)} words (at most {MAX_SENTENCE_WORDS})")
        normalised = [" ".join(sentence.lower().split()) for sentence in found]
        duplicates = len(normalised) - len(set(normalised))
        if len(found) > 1 and duplicates / len(found) > MAX_DUPLICATE_SENTENCE_RATIO:
            issues.append(f"repetitive: {duplicates} of {len(found)} sentences are repeats")
    content_words = [w for w in re.findall(r"[a-z']+", text.lower()) if w not in _STOPWORDS and len(w) > 2]
    if len(content_words) >= MIN_WORDS:
        word, times = Counter(content_words).most_common(1)[0]
        if times / len(content_words) > MAX_TOP_WORD_SHARE:
            issues.append(f"repetitive: {word!r} is {times / len(content_words):.0%} of the content words")
    score = round(max(0.0, 1.0 - QUALITY_PENALTY * len(issues)), 2)
    return {"valid": not issues, "issues": issues, "score": score}


def _section_words(biography: Mapping[str, Any], key: str, errors: list[str]) -> int:
    section = biography.get(key)
    if not isinstance(section, Mapping):
        errors.append(f"{key} is missing")
        return 0
    text = section.get("text")
    if not isinstance(text, str) or not text.strip():
        errors.append(f"{key} is empty")
        return 0
    return count_words(text)


def complete_biography(biography: Any, target_words: Any = None) -> dict[str, Any]:
    if not isinstance(biography, Mapping):
        raise InvalidInput(f"biography must be an object/dict (got {type(biography).__name__})")
    if target_words is not None:
        target_words = check_target_words(target_words)
    errors: list[str] = []
    subject = biography.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        errors.append("subject is missing or empty")
    total = _section_words(biography, "introduction", errors)
    chapters = biography.get("chapters")
    if not isinstance(chapters, list) or not chapters:
        errors.append("chapters are missing")
        chapters = []
    numbers: list[int] = []
    chapter_sources: list[str] = []
    for index, chapter in enumerate(chapters):
        if not isinstance(chapter, Mapping):
            errors.append(f"chapter at position {index + 1} is not an object")
            continue
        number = chapter.get("number")
        label = f"chapter {number}" if isinstance(number, int) else f"chapter at position {index + 1}"
        if isinstance(number, int) and not isinstance(number, bool):
            numbers.append(number)
        else:
            errors.append(f"{label} has no number")
        text = chapter.get("text")
        if not isinstance(text, str) or not text.strip():
            errors.append(f"{label} is empty")
            continue
        words = count_words(text)
        total += words
        if target_words is not None and not chapter_length(chapter, target_words)["valid"]:
            errors.append(f"{label} has {words} words, far from the target {target_words}")
        chapter_sources.extend(s for s in chapter.get("sources") or [] if isinstance(s, str))
    expected = list(range(1, len(numbers) + 1))
    if numbers and sorted(numbers) != expected:
        missing = sorted(set(expected) - set(numbers))
        repeated = sorted(n for n, c in Counter(numbers).items() if c > 1)
        detail = "; ".join(filter(None, [f"missing {missing}" if missing else "",
                                         f"repeated {repeated}" if repeated else "",
                                         f"out of range {sorted(set(numbers) - set(expected))}"
                                         if set(numbers) - set(expected) else ""]))
        errors.append(f"chapters are not numbered 1..{len(numbers)} without gaps ({detail})")
    total += _section_words(biography, "conclusion", errors)
    listed = biography.get("sources")
    if not isinstance(listed, list) or not listed:
        errors.append("sources are missing")
    else:
        absent = [s for s in dict.fromkeys(chapter_sources) if s not in listed]
        if absent:
            errors.append(f"{len(absent)} chapter source(s) are not in the biography's sources list")
    return {"valid": not errors, "errors": errors, "total_words": total, "chapter_count": len(chapters)}
