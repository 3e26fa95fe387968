"""What one indexing run did, told to a person: counts, files deleted since, and the skipped files as a table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from cbir.collection.collection import IndexReport


def print_index_report(report: IndexReport, out: Console) -> None:
    """Counts on one line, a hint when indexed files are gone, then a table of skipped files and why."""
    out.print(
        f"[green]added {report.added}[/green], updated {report.updated}, unchanged {report.unchanged}, "
        f"removed {report.removed}, skipped {len(report.skipped)} in {report.seconds:.1f} s"
    )
    if report.gone:
        are = "file is" if report.gone == 1 else "files are"
        out.print(f"[yellow]{report.gone} {are} gone: run with --sync to drop them[/yellow]")
    if report.skipped:
        table = Table(title="Skipped files", title_style="bold yellow")
        table.add_column("file", overflow="fold")
        table.add_column("reason", overflow="fold")
        for uri, reason in report.skipped:
            table.add_row(uri, reason)
        out.print(table)
