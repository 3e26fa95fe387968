"""Extraction on a Ray cluster: any pipeline's reading, decoding and encoding run as Ray Data
``map_batches`` over a pool of actors, each holding the pipeline (and its network) rebuilt from the
space's record, while the collection stores the results as they stream back.

``RayPipeline`` wraps a pipeline and is one itself: the collection sees the
same ``SourceResult`` batches as from the local path, so progress, the skip
report and crash safety (a catalog transaction per batch) are unchanged. An
actor runs the wrapped pipeline's own ``run`` on its batch in-process, so the
descriptors are those of the local path. Without an address, a local Ray is
started with one actor per core; on a cluster, cbir must be installed on
every node.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cbir.pipelines.pipeline import Pipeline
from cbir.pipelines.sources import Source, SourceResult

LOCAL = "local"
OBJECT_STORE_BYTES = 256 << 20  # a local Ray's shared memory: batches of results, not images, pass through it


class _Extractor:
    """A Ray actor: the pipeline rebuilt from its record, run on each batch of sources in-process."""

    def __init__(self, kind: str, record: dict, threads: int):
        import torch

        from cbir.pipelines import PIPELINES

        torch.set_num_threads(threads)
        self.pipeline = PIPELINES.create(kind, record=record)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sources = [Source(str(uri), tuple(Path(member) for member in members)) for uri, members in zip(batch["uri"], batch["members"])]
        known = [value or None for value in batch["known"]]
        results = [result for part in self.pipeline.run(sources, known, len(sources), 0) for result in part]
        return {
            "index": np.array([int(batch["index"][result.index]) for result in results], dtype=np.int64),
            "result": np.array([pickle.dumps(result) for result in results], dtype=object),
        }


class RayPipeline:
    """``pipeline`` with its ``run`` spread over Ray actors (``address``: a Ray cluster, or ``local``)."""

    def __init__(self, pipeline: Pipeline, address: str = LOCAL, actors: int | None = None, threads_per_actor: int = 1):
        self.inner = pipeline
        self.kind, self.name, self.space = pipeline.kind, pipeline.name, pipeline.space
        self.address = address
        self.actors = actors
        self.threads_per_actor = threads_per_actor

    def accepts(self, path: Path) -> bool:
        return self.inner.accepts(path)

    def sources(self, files: Sequence[Path]) -> list[Source]:
        return self.inner.sources(files)

    def space_record(self) -> tuple[dict, int]:
        return self.inner.space_record()

    def run(self, sources: Sequence[Source], known_hashes, batch_size: int, workers: int | None) -> Iterator[list[SourceResult]]:
        """Results batch by batch as the actors finish them (``workers``: actors, by default one per
        ``threads_per_actor`` CPUs of the cluster)."""
        import ray

        started = _connect(self.address)
        try:
            actors = workers or self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads_per_actor)
            yield from self._stream(sources, known_hashes, batch_size, actors)
        finally:
            if started:
                ray.shutdown()

    def _stream(self, sources: Sequence[Source], known_hashes, batch_size: int, actors: int) -> Iterator[list[SourceResult]]:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True
        rows = [
            {"index": index, "uri": source.uri, "members": [str(member) for member in source.members], "known": known or ""}
            for index, (source, known) in enumerate(zip(sources, known_hashes))
        ]
        record = self.inner.space_record()[0]
        dataset = ray.data.from_items(rows).map_batches(
            _Extractor,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={"kind": self.inner.kind, "record": record, "threads": self.threads_per_actor},
            num_cpus=self.threads_per_actor,
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            results = []
            for index, data in zip(batch["index"], batch["result"]):
                result = pickle.loads(data)
                result.index = int(index)
                results.append(result)
            if results:
                yield results


def _connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` or start a local one; returns whether this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if address == LOCAL:
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(part for part in (package_root, os.environ.get("PYTHONPATH", "")) if part)
        ray.init(
            num_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            include_dashboard=False, log_to_driver=False, configure_logging=False,
            object_store_memory=OBJECT_STORE_BYTES, runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    return True
