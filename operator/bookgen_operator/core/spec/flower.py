"""spec.flower.urlPrefix: the path Flower is served under (e.g. behind an Ingress that routes by path)."""

from __future__ import annotations

import re

from bookgen_operator.core.spec.model import SpecError
from bookgen_operator.core.spec.reader import Reader, show

#: Path segments without the slashes around them (Flower adds its own): the same pattern as the CRD's.
URL_PREFIX = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")


def read_url_prefix(flower: Reader) -> str:
    value = flower.string("urlPrefix", "", max_len=128)
    if value and not URL_PREFIX.fullmatch(value):
        raise SpecError(f"{flower.at('urlPrefix')} must be a path without slashes around it, such as flower or "
                        f"bookgen/flower (got {show(value)})")
    return value
