"""``cbir serve``: the search server and its web page on one collection."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from pathlib import Path
from typing import Optional, Sequence

import typer

from cbir.commands.common import user_errors
from cbir.progress import console

WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_in_use_message(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, or not an address here), or None when it can."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is already in use: stop the other server or choose another with --port"
        return f"cannot listen on {host}:{port} ({error.strerror or error}): check --host and --port"
    return None


def allowed_hosts(host: str, extra: Sequence[str]) -> tuple[str, ...] | None:
    """The Host names to answer to: those given, the bound address, and localhost names on loopback;
    None (any) for a wildcard address with no names given, whose names the server cannot know."""
    if host in WILDCARD_ADDRESSES and not extra:
        return None
    names = [*extra] + ([] if host in WILDCARD_ADDRESSES else [host])
    if _is_loopback(host):
        names += LOOPBACK_NAMES
    return tuple(dict.fromkeys(names))


def announce_address(app, host: str, port: int, token: bool) -> None:
    """Record the server's address in the collection folder while it runs (``cbir search`` sends queries to
    it), from the app's start-up to its shut-down: uvicorn ends a process stopped by a signal right after."""
    from cbir.server.address import forget, record

    folder, running = app.state.service.path, app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app):
        address = record(folder, host, port, token)
        try:
            async with running(app) as state:
                yield state
        finally:
            if address is not None:
                forget(folder, address)

    app.router.lifespan_context = lifespan


def serve(
    collection: Optional[Path] = typer.Option(None, "--collection", "-c", help="Collection directory."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; other machines reach it only if you say so."),
    port: int = typer.Option(8000, help="Port to listen on."),
    token: Optional[str] = typer.Option(
        None, envvar="CBIR_TOKEN", help="Bearer token that enables uploads and removals (or set CBIR_TOKEN)."
    ),
    max_upload_mb: float = typer.Option(20.0, help="Largest upload, in MiB."),
    max_megapixels: float = typer.Option(50.0, help="Largest image, in millions of pixels."),
    cors_origin: Optional[list[str]] = typer.Option(
        None, help="Let pages from this origin call the API (repeatable); off by default."
    ),
    allowed_host: Optional[list[str]] = typer.Option(
        None, help="A host name the server answers to (repeatable); default: the --host address, and localhost on loopback."
    ),
    store: Optional[str] = typer.Option(
        None, "--store", help="Answer from this Milvus alone (milvus://HOST:PORT/NAME, token: $CBIR_MILVUS_TOKEN) instead of a collection directory."
    ),
) -> None:
    """Serve a collection: a web page to search it by example, and a REST API (schema at /openapi.json)."""
    try:
        import uvicorn

        from cbir.server.app import create_app
        from cbir.server.settings import ServerSettings
    except ImportError as error:
        console.print(f"[red]error:[/red] {error.name} is missing: install the server with pip install 'cbir[server]'")
        raise typer.Exit(2) from None
    if (collection is None) == (store is None):
        console.print("[red]error:[/red] give a collection directory (--collection) or a Milvus store (--store milvus://HOST:PORT/NAME)")
        raise typer.Exit(2)
    problem = port_in_use_message(host, port)
    if problem is not None:
        console.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2)
    with user_errors():
        settings = ServerSettings(
            max_upload_bytes=int(max_upload_mb * 1024 * 1024),
            max_pixels=int(max_megapixels * 1_000_000),
            cors_origins=tuple(cors_origin or ()),
            allowed_hosts=allowed_hosts(host, allowed_host or ()),
        )
        console.print(f"loading {collection or store} ...")
        app = create_app(collection or Path(), token=token or None, settings=settings, store=store)
        items = app.state.service.info()["items"]
        writable = "uploads and removals need the token" if token else "read-only (no --token)"
        console.print(f"[green]serving {items} items[/green] at http://{host}:{port}/ - {writable}")
        if settings.allowed_hosts is None:
            console.print("[yellow]answering to any Host name: name the server with --allowed-host to refuse others[/yellow]")
        if not _is_loopback(host):
            console.print(
                f"[yellow]{host} is reachable from other machines: anyone there can search the collection "
                "and download its files[/yellow]"
            )
        announce_address(app, host, port, bool(token))
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)  # warnings only: no access lines
