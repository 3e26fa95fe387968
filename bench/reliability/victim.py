"""Indexes a folder slowly enough to be killed part-way: ``python -m bench.reliability.victim FOLDER COLLECTION``."""

import sys

from cbir.collection.collection import Collection

if __name__ == "__main__":
    with Collection.open_or_create(sys.argv[2]) as collection:
        collection.add([sys.argv[1]], batch_size=2, workers=0)
