"""What every command shares: the collection and encoder options, error handling and output.

Results (tables, search hits, JSON) go to stdout through ``results``;
progress, warnings and notes go to stderr through ``cbir.progress.console``,
so ``cbir info -c pics > info.txt`` and pipes get the results alone.
Nothing here imports torch, timm or FAISS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand

from cbir.progress import console

if TYPE_CHECKING:
    from cbir.collection.collection import IndexReport
    from cbir.encoders.spec import EncoderSpec

results = Console()


REGISTRY_NAMES = re.compile(r"\{([\w.]+):(\w+)\}")


def registry_names(module: str, attribute: str) -> tuple[str, ...]:
    """The names of the registry (or tuple of names) ``attribute`` of ``module``, importing it now."""
    return tuple(getattr(importlib.import_module(module), attribute))


class NameIn:
    """Parses an option value that must be a name of the registry at ``target`` (``"module:attribute"``) or of ``extra``."""

    def __init__(self, target: str, extra: tuple[str, ...] = ()):
        self.target = target
        self.extra = extra

    def __call__(self, value: str) -> str:
        names = self.extra + registry_names(*self.target.split(":"))
        if value not in names:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(names)}")
        return value


def registry_option(default: Optional[str], target: str, help: str, *names: str, extra: tuple[str, ...] = ()) -> Any:
    """An option whose value is a name of the registry at ``target``; ``--help`` lists the names.

    The registry is imported when the value is checked or the command's help is shown, not to list commands.
    """
    listed = ", ".join((*extra, "{" + target + "}"))
    return typer.Option(default, *names, parser=NameIn(target, extra), help=f"{help} One of: {listed}.")


class RegistryHelpCommand(TyperCommand):
    """A command whose options' help names ``{module:REGISTRY}`` fills in those names when the help is shown."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        for param in self.params:
            help_text = getattr(param, "help", None)
            if help_text:
                param.help = REGISTRY_NAMES.sub(lambda match: ", ".join(registry_names(*match.groups())), help_text)
        super().format_help(ctx, formatter)


class App(typer.Typer):
    """A Typer app whose commands list registry names in their help (see ``RegistryHelpCommand``)."""

    def command(self, *args, cls: type[TyperCommand] | None = None, **kwargs):
        return super().command(*args, cls=cls or RegistryHelpCommand, **kwargs)


CollectionOption = typer.Option(..., "--collection", "-c", help="Collection directory.")
BackboneOption = typer.Option(None, help="efficientnet_lite0 (default, offline), a timm name, or torchvision/NAME.")
PoolingOption = registry_option(None, "cbir.encoders.pooling:POOLINGS", "Pooling (default rmac).")
GemOption = typer.Option(None, help="GeM exponent.")
SizeOption = typer.Option(None, help="Short side of the resized image, in pixels (default 224).")
MultiscaleOption = typer.Option(None, "--multiscale/--single-scale", help="Average over scales 1, 1/sqrt(2), 1/2.")
WeightsOption = typer.Option(None, help="Backbone weights file (state dict).")
EncoderFileOption = typer.Option(None, "--encoder", help="A fine-tuned encoder file from 'cbir train' (replaces the options above).")
PrecisionOption = typer.Option(
    None, "--precision", help="What the network computes in: fp32 (default), bf16 or int8 (faster, slightly different vectors); a collection keeps its own."
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a red message on stderr and exit code 2."""
    from cbir.collection.collection import CollectionError
    from cbir.collection.errors import describe_failure
    from cbir.encoders.errors import WeightsUnavailableError
    from cbir.io.images import ImageLoadError

    try:
        yield
    except FileNotFoundError as error:
        message = f"file not found: {error.filename}" if error.filename else str(error)
        console.print(f"[red]error:[/red] {message}", soft_wrap=True)
        raise typer.Exit(2) from None
    except (CollectionError, WeightsUnavailableError, ImageLoadError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    except (OSError, sqlite3.Error) as error:
        console.print(f"[red]error:[/red] {describe_failure(error)}")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def removed_if_new_and_failed(collection: Path) -> Iterator[None]:
    """Leave nothing behind when the first run into a collection folder fails (a later run keeps its work)."""
    if (collection / "manifest.json").exists():
        yield
        return
    before = set(collection.iterdir()) if collection.is_dir() else None
    try:
        yield
    except Exception:
        if before is None:
            shutil.rmtree(collection, ignore_errors=True)
        elif collection.is_dir():
            for entry in set(collection.iterdir()) - before:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise


def missing_inputs(paths: list[Path]) -> None:
    """Raise ``FileNotFoundError`` naming the first path that does not exist."""
    for path in paths:
        if not path.expanduser().exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))


def moved_encoder_spec(collection: Path, encoder_file: Path):
    """The spec a collection's default space was built with, its encoder file now at ``encoder_file``: size,
    scales and precision stay the collection's; opening the collection with it checks the file is the same one.
    None when the collection's manifest cannot be read (opening the collection then says why)."""
    import dataclasses

    from cbir.collection.manifest import Manifest
    from cbir.encoders.spec import EncoderSpec

    try:
        manifest = Manifest.load(collection.expanduser() / "manifest.json")
        record = manifest.spaces[manifest.default_space].encoder
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dataclasses.replace(EncoderSpec.from_dict(record), checkpoint=str(encoder_file.expanduser()), checkpoint_sha256=None)


def encoder_spec_from_options(
    backbone: Optional[str],
    pooling: Optional[str],
    gem_p: Optional[float],
    size: Optional[int],
    multiscale: Optional[bool],
    weights: Optional[Path],
    encoder_file: Optional[Path] = None,
    precision: Optional[str] = None,
) -> EncoderSpec | None:
    """An EncoderSpec from the options given, or None when none was given.

    With ``encoder_file`` (from ``cbir train``) only ``size``, ``multiscale`` and ``precision`` may be changed.
    """
    from cbir.encoders.spec import MULTI_SCALES, EncoderSpec

    if encoder_file is not None:
        from cbir.encoders.encoder import encoder_spec_from_file

        if backbone or pooling or gem_p is not None or weights:
            raise ValueError("--encoder FILE already fixes backbone, pooling and weights: drop those options")
        spec = encoder_spec_from_file(encoder_file.expanduser())
        changes = {"image_size": size} if size is not None else {}
        if precision is not None:
            changes["precision"] = precision
        if multiscale is not None:
            changes["scales"] = MULTI_SCALES if multiscale else (1.0,)
        return dataclasses.replace(spec, **changes)
    given = {
        "backbone": backbone,
        "pooling": pooling,
        "gem_p": gem_p,
        "image_size": size,
        "scales": MULTI_SCALES if multiscale else ((1.0,) if multiscale is not None else None),
        "weights": str(weights.expanduser().resolve()) if weights else None,
        "precision": precision,
    }
    given = {key: value for key, value in given.items() if value is not None}
    return EncoderSpec(**given) if given else None


def json_text(data: Any) -> str:
    """Indented JSON that keeps non-ASCII text readable (a file name that is no valid text keeps its escapes)."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def print_json(data: Any) -> None:
    """``data`` as UTF-8 JSON on stdout."""
    sys.stdout.flush()
    sys.stdout.buffer.write((json_text(data) + "\n").encode("utf-8", "backslashreplace"))
    sys.stdout.buffer.flush()


def write_json(path: Path, data: Any) -> None:
    """``data`` as UTF-8 JSON in ``path`` (its folder is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((json_text(data) + "\n").encode("utf-8", "backslashreplace"))


def print_report(report: IndexReport) -> None:
    """What an indexing run did, files gone since, and the files it skipped and why (to stdout)."""
    from cbir.index_report import print_index_report

    print_index_report(report, results)
