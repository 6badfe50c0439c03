"""Per-user API tokens, issued by the server's operator and stored hashed.

The token file (``<root>/.onthefly-tokens.json``, mode 0600) holds, per token, an id, the user and the
SHA-256 of the token; the token itself is shown once, at creation. Tokens are 256-bit random strings, so
a plain SHA-256 is enough to make the file useless to someone who reads it. The server re-reads the file
when it changes, so tokens created or revoked while it runs take effect at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path

from onthefly.tracking import atomic, names
from onthefly.tracking.errors import NotFound

TOKEN_FILE = ".onthefly-tokens.json"
TOKEN_PREFIX = "otf_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Thread-safe access to one token file."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root).expanduser().resolve() / TOKEN_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, str] = {}

    def _read(self) -> list[dict]:
        try:
            return json.loads(self.path.read_text("utf-8")).get("tokens", [])
        except FileNotFoundError:
            return []

    def _write(self, tokens: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path, json.dumps({"tokens": tokens}, indent=1), durable=True, mode=0o600)
        os.chmod(self.path, 0o600)

    def create(self, user: str) -> tuple[str, str]:
        """Issue a token for ``user``: returns (token id, token). Only the hash is kept."""
        names.check_user(user)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(4)
        with self._lock:
            tokens = self._read()
            tokens.append({"id": token_id, "user": user, "sha256": token_hash(token), "created_at": time.time()})
            self._write(tokens)
        return token_id, token

    def list(self) -> list[dict]:
        """[{"id", "user", "created_at"}] (never the hashes)."""
        return [{k: t[k] for k in ("id", "user", "created_at")} for t in self._read()]

    def revoke(self, token_id: str | None = None, user: str | None = None) -> int:
        """Remove one token by id, or every token of a user; returns how many were removed."""
        if not token_id and not user:
            raise ValueError("name a token id or a user")
        with self._lock:
            tokens = self._read()
            keep = [t for t in tokens if not ((token_id and t["id"] == token_id) or (user and t["user"] == user))]
            removed = len(tokens) - len(keep)
            if removed == 0:
                raise NotFound(f"no token {'with id ' + token_id if token_id else 'for user ' + str(user)}")
            self._write(keep)
        return removed

    def user_for(self, token: str) -> str | None:
        """The user a token belongs to, or None."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        digest = token_hash(token)
        with self._lock:
            if stamp != self._stamp or digest not in self._by_hash:  # changed, or too fast for mtime
                self._by_hash = {t["sha256"]: t["user"] for t in self._read()}
                self._stamp = stamp
            return self._by_hash.get(digest)
