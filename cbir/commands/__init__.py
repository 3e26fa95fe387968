"""The command line's sub-commands, one module each; ``cbir.cli`` assembles them into ``cbir``.

Shared options, error handling and output live in ``cbir.commands.common``.
A command module imports typer, rich and ``common`` at the top and everything
heavy (torch, FAISS, models) inside the command that needs it, so ``cbir --help``
starts in a fraction of a second.
"""
