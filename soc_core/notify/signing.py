"""The robot webhooks' signing schemes, exactly as each vendor documents them.

DingTalk (钉钉自定义机器人, 加签): string_to_sign = f"{timestamp}\\n{secret}", timestamp in
milliseconds; sign = base64(HMAC-SHA256(key=secret, msg=string_to_sign)), then URL-encoded;
both go in the query string (`&timestamp=...&sign=...`). The server refuses a timestamp more
than an hour from its clock.

Feishu/Lark (飞书自定义机器人, 签名校验): the HMAC key is f"{timestamp}\\n{secret}" and the
message is empty, timestamp in seconds; sign = base64(that HMAC); `timestamp` (a string) and
`sign` go in the JSON body. Same one-hour window.

WeCom (企业微信群机器人) signs nothing: the webhook's `key` query parameter is the credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote_plus

__all__ = ["dingtalk_sign", "dingtalk_query", "feishu_sign"]


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The base64 signature (before URL encoding)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def dingtalk_query(secret: str, timestamp_ms: int) -> str:
    """`timestamp=...&sign=...` for the webhook URL; the base64 text is URL-encoded (its
    `+`, `/` and `=` would otherwise be read as other characters)."""
    return f"timestamp={timestamp_ms}&sign={quote_plus(dingtalk_sign(secret, timestamp_ms))}"


def feishu_sign(secret: str, timestamp_s: int) -> str:
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
