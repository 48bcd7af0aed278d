"""Opaque page tokens: the ``seq`` of the last item of a page, with a check.

A token is URL-safe base64 (no padding) of 15 bytes: the seq as a big-endian unsigned 64-bit
integer followed by the first 7 bytes of SHA-256 over ``(kind, project, seq)``.  The check
is not a secret — it only makes a mistyped, truncated or edited token, or a token from
another list (jobs vs. operations) or another project, fail loudly with
``InvalidArgument(field="pageToken")`` instead of silently listing the wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from mlengine.domain.errors import InvalidArgument

_SEQ_BYTES = 8
_CHECK_BYTES = 7


def _check(kind: str, project: str, seq: int) -> bytes:
    text = f"mlengine-page-token\0{kind}\0{project}\0{seq}".encode()
    return hashlib.sha256(text).digest()[:_CHECK_BYTES]


def encode_page_token(kind: str, project: str, seq: int) -> str:
    """The token that resumes a ``kind`` listing of ``project`` after ``seq``."""
    raw = seq.to_bytes(_SEQ_BYTES, "big") + _check(kind, project, seq)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page_token(token: str | None, kind: str, project: str) -> int | None:
    """The seq a token resumes after; ``None`` for no token (the first page).

    Raises InvalidArgument naming ``pageToken`` unless ``token`` came from
    :func:`encode_page_token` with the same ``kind`` and ``project``.
    """
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == _SEQ_BYTES + _CHECK_BYTES:
        seq = int.from_bytes(raw[:_SEQ_BYTES], "big")
        # Re-encoding rejects tokens that differ only in ignored base64 bits or padding.
        if hmac.compare_digest(raw[_SEQ_BYTES:], _check(kind, project, seq)) and (
            encode_page_token(kind, project, seq) == token
        ):
            return seq
    shown = token if len(token) <= 40 else token[:37] + "..."
    raise InvalidArgument(
        f"Invalid pageToken {shown!r}: pass the nextPageToken of the previous response "
        "unchanged, with the same project and list method, or omit it to start from the "
        "first page.",
        field="pageToken",
    )
