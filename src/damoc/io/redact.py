"""Credentials never reach a message, a log or a record.

Three kinds are removed from any text shown or stored: the user-info part of a URL
(``http://user:password@host`` becomes ``http://***@host``), the value of an ``Authorization`` header
or a bearer token, and every value registered with :func:`register_secret` (the API keys damoc reads from
the environment, registered as they are read).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_SECRETS: set[str] = set()
_MIN_SECRET = 4  # shorter values would mask ordinary words

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/\s@]+)@")
_AUTH = re.compile(r"(?i)\b(?P<head>authorization\s*[:=]\s*)(?P<kind>(?:bearer|basic|token)\s+)?[^\s,;'\"]+")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer\s+)[A-Za-z0-9._~+/=-]+")


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user-info part, and the user and password it held (registered as secrets)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    register_secret(parts.password or parts.username)  # a lone user name is a token (https://TOKEN@host)
    return urlunsplit(parts._replace(netloc=host)), parts.username, parts.password


def redact_url(url: str) -> str:
    """``url`` with its user-info part masked (``scheme://***@host/...``)."""
    return redact(url)


def redact(text: Any) -> Any:
    """``text`` with URL user-info, authorization values and registered secrets masked.

    Lists, tuples and dicts are redacted item by item; other values are returned as they are.
    """
    if isinstance(text, dict):
        return {k: redact(v) for k, v in text.items()}
    if isinstance(text, list | tuple):
        return type(text)(redact(v) for v in text)
    if not isinstance(text, str):
        return text
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    out = _AUTH.sub(lambda m: f"{m.group('head')}{m.group('kind') or ''}{MASK}", out)
    out = _BEARER.sub(lambda m: f"{m.group('head')}{MASK}", out)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


class RedactingFilter(logging.Filter):
    """A log filter that masks credentials in each record's message (and its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (default: damoc's own logger)."""
    logger = logger or logging.getLogger("damoc")
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
