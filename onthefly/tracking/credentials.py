"""Client-side login: the token for each tracking server, kept in a file only the user can read (0600).

    $ONTHEFLY_CONFIG_DIR/tracking-credentials.json   (default ~/.config/onthefly/)
    {"default": "127.0.0.1:47700", "servers": {"127.0.0.1:47700": {"user": "alice", "token": "otf_..."}}}

``$ONTHEFLY_TOKEN`` overrides the file for any server.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from onthefly.tracking import atomic
from onthefly.tracking.errors import InvalidArgument, Unauthenticated

FILE_NAME = "tracking-credentials.json"


def config_dir() -> Path:
    return Path(os.environ.get("ONTHEFLY_CONFIG_DIR") or Path.home() / ".config" / "onthefly")


def credentials_path() -> Path:
    return config_dir() / FILE_NAME


def normalize_address(address: str) -> str:
    address = address.strip()
    for scheme in ("grpc://", "http://"):
        if address.startswith(scheme):
            address = address[len(scheme):]
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgument(f"server address {address!r} must be HOST:PORT, e.g. 127.0.0.1:47700")
    return address


def load() -> dict[str, Any]:
    path = credentials_path()
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {"servers": {}}
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}; run `onthefly login` again") from None
    data.setdefault("servers", {})
    return data


def save_login(address: str, user: str, token: str) -> Path:
    """Store the token for ``address`` (and make it the default server) in a 0600 file."""
    address = normalize_address(address)
    data = load()
    data["servers"][address] = {"user": user, "token": token}
    data["default"] = address
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = credentials_path()
    atomic.write_text(path, json.dumps(data, indent=1), durable=True, mode=0o600)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


def default_server() -> str | None:
    return os.environ.get("ONTHEFLY_DASH_URL") or load().get("default")


def resolve(address: str | None, token: str | None = None) -> tuple[str, str, str | None]:
    """(address, token, user or None) for a server: explicit token, then $ONTHEFLY_TOKEN, then the login."""
    address = address or default_server()
    if not address:
        raise InvalidArgument("no tracking server given: pass dash_url='HOST:PORT' or run `onthefly login --server HOST:PORT`")
    address = normalize_address(address)
    entry = load()["servers"].get(address, {})
    token = token or os.environ.get("ONTHEFLY_TOKEN") or entry.get("token")
    if not token:
        raise Unauthenticated(f"no token for {address}: run `onthefly login --server {address}` with a token from "
                              f"the server's operator (`onthefly token create --user NAME`), or set $ONTHEFLY_TOKEN")
    user = entry.get("user") if entry.get("token") == token else None
    return address, token, user


def user_for(address: str | None) -> str | None:
    """The user name stored at login for ``address`` (None if unknown)."""
    try:
        return resolve(address)[2]
    except (InvalidArgument, Unauthenticated):
        return None
