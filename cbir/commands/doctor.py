"""``cbir doctor``: the command around ``cbir.collection.doctor``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

STATUS_STYLE = {"ok": "green", "repaired": "yellow", "problem": "red"}


def doctor(
    collection: Path = typer.Option(..., "--collection", "-c", help="Collection directory."),
    repair: bool = typer.Option(False, "--repair", help="Fix what can be rebuilt from the catalog."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check a collection's catalog, manifest, indexes, files and leftovers; exit code 1 while problems remain."""
    from cbir.commands.common import user_errors
    from cbir.collection.doctor import diagnose

    with user_errors():
        diagnosis = diagnose(collection, repair=repair)
    if as_json:
        typer.echo(json.dumps(diagnosis.to_dict(), indent=2))
    else:
        table = Table(title=str(collection))
        for column in ("check", "status", "detail"):
            table.add_column(column, overflow="fold")
        for finding in diagnosis.findings:
            style = STATUS_STYLE[finding.status]
            table.add_row(finding.check, f"[{style}]{finding.status}[/{style}]", finding.detail)
        Console().print(table)
    if diagnosis.problems_left:
        raise typer.Exit(1)
