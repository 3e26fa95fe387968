"""An upload's descriptor computed before the collection is locked, handed to ``Collection.add`` as a pipeline.

Decoding and running the network take tens of milliseconds to seconds; done
under the collection's write lock they would hold up every search for as
long. The whole-image pipeline runs first, outside any lock, and this
pipeline then gives its results to ``Collection.add``, whose locked part is
only the catalog and index update.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Sequence

from cbir.pipelines.pipeline import Pipeline
from cbir.pipelines.sources import Source, SourceResult


class PreparedPipeline:
    """Replays the results ``pipeline`` gave for one file."""

    def __init__(self, pipeline: Pipeline, path: Path, batch_size: int = 1):
        self.kind, self.name, self.space = pipeline.kind, pipeline.name, pipeline.space
        self._pipeline = pipeline
        self.path = path
        self._sources = pipeline.sources([path])
        runs = pipeline.run(self._sources, [None] * len(self._sources), batch_size, 0)
        self.results = [result for batch in runs for result in batch]

    def accepts(self, path: Path) -> bool:
        return path == self.path

    def sources(self, files: Sequence[Path]) -> list[Source]:
        if [Path(file) for file in files] != [self.path]:
            raise ValueError(f"prepared for {self.path}, asked for {list(files)}")
        return self._sources

    def space_record(self) -> tuple[dict, int]:
        return self._pipeline.space_record()

    def run(
        self, sources: Sequence[Source], known_hashes: Sequence[str | None], batch_size: int, workers: int | None
    ) -> Iterator[list[SourceResult]]:
        if [source.uri for source in sources] != [source.uri for source in self._sources]:
            raise ValueError(f"prepared for {self.path}, asked for {[source.uri for source in sources]}")
        yield [
            dataclasses.replace(result, items=[], unchanged=True)
            if result.content_hash is not None and result.content_hash == known_hashes[0]
            else result
            for result in self.results
        ]
