"""Application-layer parsers over raw payload bytes (DNS, HTTP/1.x, TLS hello, SSH banner).

Each returns a plain dict (or None when the bytes are not that protocol) and raises
ValueError (or IndexError/struct.error) on malformed input; the engine counts those."""
