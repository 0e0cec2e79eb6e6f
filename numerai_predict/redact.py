"""The one redaction of credentials in URLs, for every log line, message and report.

Presigned S3 URLs carry their credentials in the query string
(X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, a POST policy) and
some URLs carry a user and password before the host: both are removed wherever
a URL, or a path with a query (as requests quotes it: ``url: /key?X-Amz-...``),
appears in text. Standard library only: predict.py --help imports this module.
"""

from __future__ import annotations

import logging
import re
import urllib.parse

# A URL (scheme://...) or a path or file name with a query attached, up to a delimiter.
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
QUERY = re.compile(r"(?<=[^\s'\"(])\?[^\s'\"<>)]*=[^\s'\"<>)]*")
# Credential fields of presigned requests quoted on their own (e.g. key=value lists).
FIELD = re.compile(r"(?i)\b(x-amz-signature|x-amz-credential|x-amz-security-token|signature|policy|"
                   r"awsaccesskeyid)=[^&\s'\"]+")


def redact(url: str) -> str:
    """``url`` without query string, fragment and userinfo: what identifies it, not what grants access."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host
        return url.split("?", 1)[0].split("#", 1)[0]
    if not parts.scheme or not parts.netloc:
        return url.split("?", 1)[0].split("#", 1)[0]
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text: str) -> str:
    """``text`` with every URL redacted and any other query string or credential field removed."""
    text = URL.sub(lambda match: redact(match.group(0)), text)
    text = QUERY.sub("", text)
    return FIELD.sub(lambda match: f"{match.group(1)}=<redacted>", text)


class RedactingFilter(logging.Filter):
    """Scrubs every record a handler emits, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def redact_logging() -> None:
    """Install the filter on every handler of the root logger (call after logging.basicConfig)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
