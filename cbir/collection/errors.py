"""The error a collection raises when it cannot do what was asked; the message says what to do."""


class CollectionError(RuntimeError):
    """A collection that cannot be created, opened or used as asked; the message says what to do."""
