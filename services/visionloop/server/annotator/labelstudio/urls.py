"""Signed image URLs: Label Studio's browser loads hub images from the bridge without a header.

A URL names the image and an expiry and carries an HMAC-SHA256 of both under the bridge's
credential, so only whoever holds that credential (the project set-up) can make one, and
rotating the credential revokes them all.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode


def signature(secret: str, image_id: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"image:{image_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def image_url(base: str, secret: str, image_id: str, ttl_seconds: int, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl_seconds)
    query = urlencode({"expires": expires, "signature": signature(secret, image_id, expires)})
    return f"{base.rstrip('/')}/images/{image_id}?{query}"


def valid(secret: str, image_id: str, expires: str, given: str, now: float | None = None) -> bool:
    if not expires.isdigit() or int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature(secret, image_id, int(expires)), given)
