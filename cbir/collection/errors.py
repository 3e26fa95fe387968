"""The error a collection raises when it cannot do what was asked, and one-line descriptions of system failures."""

from __future__ import annotations

import errno
import sqlite3


class CollectionError(RuntimeError):
    """A collection that cannot be created, opened or used as asked; the message says what to do."""


def describe_failure(error: OSError | sqlite3.Error) -> str:
    """One line for a failure of the machine rather than of the input: a full disk, a read-only
    folder, a damaged database; it names the file where known and says what to do."""
    if isinstance(error, sqlite3.Error):
        text = str(error)
        if "full" in text:
            return "the disk is full (writing the catalog): free some space and run again; what was committed is kept"
        if "readonly" in text or "read-only" in text:
            return f"the catalog cannot be written ({text}): the collection is read-only here; searching still works"
        if "malformed" in text or "not a database" in text:
            return f"the catalog is damaged ({text}): 'cbir doctor --collection DIR' says more; restore catalog.sqlite from a backup"
        return f"the catalog failed: {text}"
    where = f" writing {error.filename}" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"no space left on the device{where}: free some space and run again; the collection keeps what was committed"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not allowed{where}: {error.strerror}; searching a collection needs no write access, changing it does"
    return f"{error.strerror or error}{f' ({error.filename})' if error.filename else ''}"
