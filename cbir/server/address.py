"""Where a running ``cbir serve`` answers for a collection: a small file in the collection folder.

``cbir serve`` writes ``.serve.json`` (host name, process id, address and
port, whether a token guards changes; never the token) before it starts
listening and removes it when it stops. ``cbir search`` reads it to send
its query to the server, which has the model loaded, instead of loading
torch and the model itself. A file left by a server that was killed, or
written on another machine sharing the folder, is ignored. Standard
library only: the command line reads it before deciding to import more.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

ADDRESS_FILE = ".serve.json"
CONNECT_TO = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True)
class ServerAddress:
    """A server process and where it listens."""

    machine: str
    pid: int
    host: str
    port: int
    token: bool

    @property
    def url(self) -> str:
        """The base URL to reach the server from this machine (loopback for a wildcard address)."""
        host = CONNECT_TO.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def alive(self) -> bool:
        """Whether the recorded process still runs on this machine."""
        if self.machine != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def record(collection: Path, host: str, port: int, token: bool) -> ServerAddress | None:
    """Write this process's address into the collection folder; None when the folder cannot be written."""
    address = ServerAddress(socket.gethostname(), os.getpid(), host, port, token)
    target = collection / ADDRESS_FILE
    temporary = collection / f".{ADDRESS_FILE}.{os.getpid()}.tmp"
    try:
        temporary.write_text(json.dumps(asdict(address)))
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
        return None
    return address


def forget(collection: Path, address: ServerAddress) -> None:
    """Remove the address file if it is still this server's (another may have replaced it)."""
    if running_server(collection, check_alive=False) == address:
        (collection / ADDRESS_FILE).unlink(missing_ok=True)


def running_server(collection: Path, check_alive: bool = True) -> ServerAddress | None:
    """The server recorded for ``collection`` if its process is alive, else None."""
    try:
        data = json.loads((collection / ADDRESS_FILE).read_text())
        address = ServerAddress(str(data["machine"]), int(data["pid"]), str(data["host"]), int(data["port"]), bool(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return address if not check_alive or address.alive() else None
