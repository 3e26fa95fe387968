"""``cbir migrate``: move a collection's vectors to another store (FAISS, Milvus Lite, a Milvus server)."""

from __future__ import annotations

from pathlib import Path

import typer

from cbir.commands.common import CollectionOption, print_json, results, user_errors
from cbir.progress import console


def migrate(
    collection: Path = CollectionOption,
    to: str = typer.Option(..., "--to", help="faiss, milvus-lite, or milvus://HOST:PORT/NAME (token: $CBIR_MILVUS_TOKEN)."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Move a collection's vectors to another store, filled from its catalog; searches then use it."""
    from cbir.collection.collection import Collection

    with user_errors(), Collection.open(collection) as store:
        before = {name: info.store for name, info in store.manifest.spaces.items()}
        console.print(f"filling {to} from the catalog ({store.catalog.count_items()} items) ...")
        store.move_to_store(to)
        counts = {name: len(store.index(name)) for name in store.manifest.spaces}
    outcome = {"collection": str(collection), "from": before, "to": to, "items": counts}
    if as_json:
        print_json(outcome)
    else:
        results.print(f"{collection}: vectors now in {to} ({', '.join(f'{name}: {count}' for name, count in counts.items())})")
