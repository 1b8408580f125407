"""An OpenAI-compatible chat-completions backend (OpenAI, OpenRouter, vLLM, Ollama, ...).

Failures are sorted for the task's retry logic: timeouts, connection errors, 408/409/429 and 5xx
are TransientError (retried with backoff); authentication and other 4xx are PermanentError. The
API key is sent only in the Authorization header and never appears in a message or log line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import httpx

from ..config import ConfigError, Settings
from ..errors import PermanentError, TransientError
from .drafts import Draft, TextRequest

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429}
_SOURCES_HEADER = re.compile(r"^\s*(?:#+\s*|\*\*)?sources\s*:?\s*(?:\*\*)?\s*$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")

SYSTEM_PROMPT = (
    "You write chapters of well-researched biographies in clear, readable prose, in paragraphs "
    "separated by blank lines, without headings. When asked for sources, end with a line 'SOURCES:' "
    "followed by one source per line in the form: Author, Title (Year). URL-or-publisher"
)


def build_prompt(request: TextRequest) -> str:
    if request.kind == "chapter":
        prompt = (f"Write chapter {request.chapter_number}, titled \"{request.title}\", of a biography of "
                  f"{request.subject}. Aim for about {request.target_words} words. Then list 3 to 5 sources.")
    else:
        outline = "; ".join(request.chapter_titles) or "(no chapter list)"
        prompt = (f"Write the {request.kind} of a biography of {request.subject}, about {request.target_words} "
                  f"words. The chapters are: {outline}. Do not list sources.")
    if request.feedback:
        prompt += f"\n\nRevise the previous draft following this feedback: {request.feedback}"
        if request.previous_text:
            prompt += f"\n\nPrevious draft:\n{request.previous_text}"
    return prompt


def split_sources(content: str) -> Draft:
    """Prose before a 'SOURCES:' line, one source per line after it."""
    lines = content.strip().splitlines()
    for index, line in enumerate(lines):
        if _SOURCES_HEADER.match(line):
            sources = [_BULLET.sub("", item).strip() for item in lines[index + 1:]]
            return Draft(text="\n".join(lines[:index]).strip(), sources=tuple(s for s in sources if s))
    return Draft(text=content.strip())


@dataclass
class OpenAIGenerator:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)  # repr=False: never printed with the object
    timeout: float = 60.0
    name: str = "openai"

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIGenerator:
        if not settings.llm_base_url or not settings.llm_model:
            raise ConfigError("BOOKGEN_GENERATOR=openai needs BOOKGEN_LLM_BASE_URL and BOOKGEN_LLM_MODEL")
        return cls(settings.llm_base_url.rstrip("/"), settings.llm_model, settings.llm_api_key, settings.llm_timeout)

    def write(self, request: TextRequest) -> Draft:
        content = self._complete(build_prompt(request), max_tokens=int(request.target_words * 2) + 200)
        draft = split_sources(content)
        if not draft.text:
            raise TransientError(f"the LLM service at {self.base_url} returned an empty text")
        return draft

    def _complete(self, prompt: str, max_tokens: int) -> str:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = {"model": self.model, "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]}
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))) as client:
                response = client.post(url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise TransientError(f"the LLM service at {url} did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"could not reach the LLM service at {url}: {type(exc).__name__}") from None
        return self._content(url, response)

    def _content(self, url: str, response: httpx.Response) -> str:
        status = response.status_code
        if status in (401, 403):
            raise PermanentError(f"the LLM service at {url} refused the credentials (HTTP {status}); "
                                 "check BOOKGEN_LLM_API_KEY")
        if status in RETRYABLE_STATUS or status >= 500:
            raise TransientError(f"the LLM service at {url} answered HTTP {status}: {self._excerpt(response)}")
        if status >= 400:
            raise PermanentError(f"the LLM service at {url} rejected the request (HTTP {status}): "
                                 f"{self._excerpt(response)}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            # Often an HTML error page from a proxy: retrying may help, and the retries are bounded.
            raise TransientError(f"the LLM service at {url} returned a malformed response "
                                 f"(no choices[0].message.content): {self._excerpt(response)}") from None
        if not isinstance(content, str):
            raise TransientError(f"the LLM service at {url} returned a malformed response (content is not text)")
        return content

    def _excerpt(self, response: httpx.Response, limit: int = 200) -> str:
        text = " ".join(response.text.split())[:limit]
        return text.replace(self.api_key, "***") if self.api_key else text
