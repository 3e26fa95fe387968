"""The offline demo: a collection of photos that ship with installed packages, queried by edited copies.

Each query is a cropped, mirrored, re-lit copy of one collection photo, so
the right answer is known: the photo it was made from should rank first.
One deliberately broken file shows how bad input is reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from rich.table import Table

from cbir.collection.collection import Collection
from cbir.index_report import print_index_report
from cbir.progress import console, progress_bar
from cbir.visualize import result_grid

SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cat", "coffee", "coins", "colorwheel", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
)
QUERY_SOURCES = ("cat", "coffee", "astronaut", "china", "rocket", "grace_hopper")


def packaged_photos() -> dict[str, Image.Image]:
    """Photos bundled inside scikit-image, scikit-learn and matplotlib (no download)."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = {name: Image.fromarray(getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS}
    photos["motorcycle"] = Image.fromarray(skimage.data.stereo_motorcycle()[0])
    for name in ("china", "flower"):
        photos[name] = Image.fromarray(load_sample_image(f"{name}.jpg"))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as stream:
        photos["grace_hopper"] = Image.open(stream).convert("RGB")
    return {name: image.convert("RGB") for name, image in photos.items()}


def edited_copy(image: Image.Image, seed: int) -> Image.Image:
    """A plausible near-duplicate: crop ~75%, mirror, change brightness and contrast."""
    rng = np.random.default_rng(seed)
    width, height = image.size
    crop_w, crop_h = int(width * 0.75), int(height * 0.75)
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    edited = ImageOps.mirror(image.crop((left, top, left + crop_w, top + crop_h)))
    edited = ImageEnhance.Brightness(edited).enhance(float(rng.uniform(0.75, 1.25)))
    return ImageEnhance.Contrast(edited).enhance(float(rng.uniform(0.8, 1.2)))


def run_demo(out: Path) -> int:
    """Build ``out/collection`` from packaged photos, run the edited queries, write grids; returns top-1 hits."""
    images_dir, queries_dir = out / "images", out / "queries"
    images_dir.mkdir(parents=True, exist_ok=True)
    queries_dir.mkdir(parents=True, exist_ok=True)
    photos = packaged_photos()
    for name, image in photos.items():
        image.save(images_dir / f"{name}.jpg", quality=92)
    (images_dir / "broken.jpg").write_bytes((images_dir / "cat.jpg").read_bytes()[:2000])
    for seed, name in enumerate(QUERY_SOURCES):
        edited_copy(photos[name], seed).save(queries_dir / f"{name}-edited.jpg", quality=90)

    console.print(f"[bold]cbir demo[/bold]: {len(photos)} packaged photos + 1 broken file -> {out / 'collection'}")
    with Collection.open_or_create(out / "collection") as collection:
        with progress_bar("indexing") as update:
            report = collection.add([images_dir], progress=update)
        print_index_report(report, console)
        table = Table(title="Edited copies as queries: is the original first?")
        for column in ("query", "top-1", "score", "top-2", "score", "correct"):
            table.add_column(column)
        correct = 0
        for name in QUERY_SOURCES:
            query_path = queries_dir / f"{name}-edited.jpg"
            results = collection.search(query_path, k=5)
            hit = Path(results[0].uri).stem == name
            correct += hit
            table.add_row(
                query_path.name, Path(results[0].uri).name, f"{results[0].score:.3f}",
                Path(results[1].uri).name, f"{results[1].score:.3f}", "[green]yes[/green]" if hit else "[red]no[/red]",
            )
            result_grid(Image.open(query_path).convert("RGB"), results, out / f"grid-{name}.png")
        console.print(table)
    console.print(f"{correct}/{len(QUERY_SOURCES)} queries found their original first; grids in {out}/grid-*.png")
    return correct
