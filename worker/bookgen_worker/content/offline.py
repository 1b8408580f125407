"""The offline generator: deterministic, readable prose without any network.

The same request (subject, kind, chapter, title, feedback) always yields the same text, so tests,
demos and replays are reproducible; different feedback yields a different draft. Sentences are
assembled from phrase banks and never repeat within a draft, so the text passes the repetition
check of the content-quality validator.
"""

from __future__ import annotations

import hashlib
import random
import time

from .biography import count_words
from .drafts import Draft, TextRequest

OPENERS = (
    "", "", "", "In those years,", "By most accounts,", "Looking back,", "At the same time,", "Even then,",
    "Over the following months,", "For a while,", "Before long,", "In hindsight,", "Quietly,",
    "More than once,", "Throughout this period,", "According to later recollections,", "Above all,",
)
ACTORS = (
    "{subject}", "{subject}", "{short}", "{short}", "those closest to {short}", "contemporaries of {short}",
    "observers at the time", "later biographers", "friends and rivals alike", "the people around {short}",
)
VERBS = (
    "came to understand", "grew increasingly aware of", "returned again and again to", "wrote at length about",
    "wrestled with", "found new meaning in", "were shaped by", "spoke openly about", "placed great weight on",
    "never fully escaped", "learned to navigate", "kept careful notes on", "argued passionately over",
    "drew steady strength from", "questioned", "made room for",
)
OBJECTS = (
    "the value of patient, careful work", "the expectations of a demanding family", "questions of duty and ambition",
    "the changing politics of the era", "the lessons of an early failure", "friendships that would last for decades",
    "letters written late at night", "the gap between public praise and private doubt", "the cost of success",
    "an unfinished project", "the habits of a disciplined routine", "the advice of an older mentor",
    "the tension between loyalty and independence", "a growing circle of collaborators", "the demands of travel",
    "the slow work of building a reputation", "criticism from unexpected quarters", "the meaning of home",
    "a sense of responsibility to others", "the limits of what one person could change", "a restless curiosity",
    "the memory of difficult beginnings", "the promise of a new opportunity", "the weight of public attention",
    "small daily rituals", "the ideas of the day", "a series of difficult choices", "old loyalties",
    "the pressures of money and time", "the quiet support of a few trusted friends",
)
CLOSERS = (
    "", "", "", "", "which would matter greatly later on", "as surviving letters make clear",
    "according to several accounts", "in ways that few people noticed at the time",
    "long before it became fashionable", "with a seriousness that surprised many", "despite frequent setbacks",
    "and the effects lasted for years", "though the record is incomplete", "without much public notice",
)
#: Short sentences that close the gap to the target when no full sentence fits any more.
FILLERS = (
    "It mattered.", "Much remained uncertain.", "The record is thin here.", "Few people knew it then.",
    "Not everyone agreed, of course.", "Others saw it quite differently at first.", "The work went on.",
    "It was, in many ways, a turning point.", "Little of this was easy.", "The consequences would take years to show.",
    "Some of it was luck.", "Time would tell.", "That was only the beginning.", "Nothing about it was simple.",
)
AUTHORS = (
    "Margaret Ellison", "David Okafor", "Helen Marsh", "Tomas Reyes", "Anna Lindqvist", "Robert Chen",
    "Claire Dubois", "Samuel Adeyemi", "Julia Novak", "Peter Hargreaves", "Laura Bianchi", "Michael Torres",
)
SOURCE_TITLES = (
    "{subject}: A Life", "The Early Years of {subject}", "{subject} and the Making of an Era",
    "Letters and Papers of {subject}", "Remembering {subject}", "{subject} in Context",
    "A Portrait of {subject}", "The World of {subject}", "{subject}: New Perspectives",
)
PUBLISHERS = (
    "Oxford University Press", "Cambridge University Press", "Penguin Books", "Harvard University Press",
    "Yale University Press", "https://archive.org/details/biography-studies", "Vintage", "HarperCollins",
)
SOURCES_PER_CHAPTER = 3
SOURCE_POOL_SIZE = 12


def _rng(*parts: object) -> random.Random:
    """A random generator seeded by the request, identical in every process (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _short_name(subject: str) -> str:
    words = subject.split()
    return words[-1] if len(words) > 1 else subject


class OfflineGenerator:
    name = "offline"

    def __init__(self, seconds_per_text: float = 0.0) -> None:
        # Stands in for a model's latency (BOOKGEN_OFFLINE_SECONDS) so a demo has work to scale for.
        self.seconds_per_text = seconds_per_text

    def write(self, request: TextRequest) -> Draft:
        if self.seconds_per_text > 0:
            time.sleep(self.seconds_per_text)
        rng = _rng(request.subject, request.kind, request.chapter_number, request.title, request.feedback)
        text = self._prose(rng, request)
        sources = self._sources(request) if request.kind == "chapter" else ()
        return Draft(text=text, sources=sources)

    def _prose(self, rng: random.Random, request: TextRequest) -> str:
        words = {"subject": request.subject, "short": _short_name(request.subject)}
        used: set[str] = set()
        sentences = [*self._lead_sentences(request)]
        used.update(sentences)
        total = sum(count_words(sentence) for sentence in sentences)
        target = request.target_words
        misses = 0
        while total < target and misses < 200:
            sentence = self._sentence(rng, words)
            length = count_words(sentence)
            if sentence in used or total + length > target:
                misses += 1  # too long for what is left, or already said: draw another
                continue
            used.add(sentence)
            sentences.append(sentence)
            total += length
        for filler in sorted(FILLERS, key=lambda f: (-count_words(f), f)):  # longest that fits first
            if 0 < count_words(filler) <= target - total:
                sentences.insert(rng.randint(1, len(sentences)) if sentences else 0, filler)
                total += count_words(filler)
        return self._paragraphs(rng, sentences)

    def _lead_sentences(self, request: TextRequest) -> list[str]:
        subject = request.subject
        if request.kind == "introduction":
            lead = [f"This book tells the story of {subject}."]
            if request.chapter_titles:
                lead.append(f"It follows that life in {len(request.chapter_titles)} chapters, "
                            f"from {request.chapter_titles[0]} to {request.chapter_titles[-1]}.")
        elif request.kind == "conclusion":
            lead = [f"Looking back over the whole life of {subject}, a few threads stand out."]
        else:
            lead = [f"This chapter, {request.title}, turns to a new part of the life of {subject}."]
        # Tiny targets keep only what fits; a lead sentence is never cut in the middle.
        kept, total = [], 0
        for sentence in lead:
            if total + count_words(sentence) <= request.target_words:
                kept.append(sentence)
                total += count_words(sentence)
        return kept

    @staticmethod
    def _sentence(rng: random.Random, words: dict[str, str]) -> str:
        opener, actor = rng.choice(OPENERS), rng.choice(ACTORS).format(**words)
        verb, obj, closer = rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(CLOSERS)
        if actor in (words["subject"], words["short"]) and verb == "were shaped by":
            verb = "was shaped by"
        body = " ".join(part for part in (opener, actor, verb, obj) if part)
        if closer:
            body += f", {closer}"
        return body[0].upper() + body[1:] + "."

    @staticmethod
    def _paragraphs(rng: random.Random, sentences: list[str]) -> str:
        paragraphs, index = [], 0
        while index < len(sentences):
            size = rng.randint(4, 7)
            paragraphs.append(" ".join(sentences[index:index + size]))
            index += size
        return "\n\n".join(paragraphs)

    @staticmethod
    def _sources(request: TextRequest) -> tuple[str, ...]:
        """Picked from a pool seeded by the subject only, so chapters share some sources (as real ones do)."""
        pool_rng = _rng(request.subject, "sources")
        pool = []
        for index in range(SOURCE_POOL_SIZE):
            author = AUTHORS[(index * 5 + pool_rng.randrange(len(AUTHORS))) % len(AUTHORS)]
            title = SOURCE_TITLES[index % len(SOURCE_TITLES)].format(subject=request.subject)
            year = pool_rng.randint(1950, 2023)
            pool.append(f"{author}, {title} ({year}). {pool_rng.choice(PUBLISHERS)}")
        pool = list(dict.fromkeys(pool))
        picker = _rng(request.subject, "chapter-sources", request.chapter_number)
        return tuple(picker.sample(pool, k=min(SOURCES_PER_CHAPTER, len(pool))))
