"""Fine-tuning: data readers, miners, the network split, a short training run, the encoder file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cbir.encoders.encoder import Encoder, EncoderSpec, encoder_spec_from_file, load_encoder_file
from cbir.io.medmnist import read_medmnist
from cbir.training.augment import RetrievalAugmentation
from cbir.training.data import load_training_data, read_tuples_file
from cbir.training.inputs import CachedFeatures, LiveImages
from cbir.training.mining import PoolHardNegatives, index_tuple
from cbir.training.network import TrainableEncoder, backbone_stages
from cbir.training.trainer import TrainConfig, train
from cbir.training.validation import split_labelled

SIZE = 64
FAST = dict(image_size=SIZE, epochs=3, epoch_batches=1, batch_size=12, m_per_class=4, views=2, workers=0, lr=1e-3, patience=10)


def class_image(label: int, seed: int) -> Image.Image:
    """Class = shape and colour family (circles / bars / crosses); position, size and tint vary by seed."""
    rng = np.random.default_rng(1000 * label + seed)
    base = [(200, 60, 60), (60, 160, 60), (60, 60, 200)][label]
    image = Image.new("RGB", (96, 80), tuple(int(v) for v in rng.integers(0, 80, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y, r = int(rng.integers(10, 80)), int(rng.integers(10, 64)), int(rng.integers(6, 16))
        colour = tuple(int(np.clip(c + rng.integers(-40, 40), 0, 255)) for c in base)
        if label == 0:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        elif label == 1:
            draw.rectangle([x - r, y - 3, x + r, y + 3], fill=colour)
        else:
            draw.line([x - r, y - r, x + r, y + r], fill=colour, width=4)
            draw.line([x - r, y + r, x + r, y - r], fill=colour, width=4)
    return image


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("classes")
    for label in range(3):
        folder = root / f"class{label}"
        folder.mkdir()
        for seed in range(8):
            class_image(label, seed).save(folder / f"{seed}.png")
    return root


@pytest.fixture(scope="module")
def trained(class_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model.pt"
    data = load_training_data(class_folders)
    config = TrainConfig(loss="contrastive", miner="none", whitening=True, whitening_dim=16, val="images", pooling="gem", **FAST)
    return train(config, data, out, quiet=True), data


def test_class_folders_and_labels_csv(class_folders, tmp_path):
    data = load_training_data(class_folders)
    assert data.kind == "labels" and len(data) == 24 and data.class_names == ["class0", "class1", "class2"]
    assert np.bincount(data.labels).tolist() == [8, 8, 8]
    csv = tmp_path / "labels.csv"
    csv.write_text("filename,class_id,class_name\n" + "".join(f"class{c}/{s}.png,{c},name{c}\n" for c in (2, 0) for s in range(3)))
    from_csv = load_training_data(class_folders, csv)
    assert from_csv.class_names == ["name0", "name2"] and from_csv.labels.tolist() == [1, 1, 1, 0, 0, 0]


def test_tuple_files_are_told_apart(class_folders, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"a,b,same\n{class_folders}/class0/0.png,{class_folders}/class0/1.png,1\n"
                     f"{class_folders}/class0/0.png,{class_folders}/class1/1.png,0\n"
                     f"{class_folders}/class0/0.png,{class_folders}/missing.png,0\n")
    data = read_tuples_file(pairs)
    assert data.kind == "pairs" and data.tuples.tolist() == [[0, 1, 1], [0, 2, 0]]
    assert "1 rows naming missing files dropped" in data.origin
    triplets = tmp_path / "triplets.txt"
    triplets.write_text(f"{class_folders}/class0/0.png {class_folders}/class0/1.png {class_folders}/class2/1.png\n")
    assert read_tuples_file(triplets).kind == "triplets"


def test_default_validation_holds_out_whole_classes():
    labels = np.repeat(np.arange(8), 5)  # 8 classes of 5 images, as a small flower set
    split = split_labelled(labels, np.arange(40))
    assert split.mode == "classes" and split.leave_one_out and not split.note
    held, trained = set(labels[split.queries]), set(labels[split.train])
    assert len(held) == 2 and not held & trained and len(trained) == 6
    assert np.array_equal(split.queries, split.database) and len(split.queries) == 10
    assert np.array_equal(np.sort(np.concatenate([split.train, split.queries])), np.arange(40))


def test_validation_falls_back_to_images_when_classes_are_few_and_says_so():
    labels = np.repeat(np.arange(4), 5)  # holding 2 out would leave 2 to train on
    split = split_labelled(labels, np.arange(20))
    assert split.mode == "images" and "4 classes are too few" in split.note and split.note in split.describe()
    assert set(labels[split.queries]) == set(labels[split.train]) == {0, 1, 2, 3}
    assert split_labelled(np.repeat(np.arange(5), 5), np.arange(25)).mode == "classes"
    singletons = np.concatenate([np.arange(5), [0, 0]])  # only one class has a second image to find
    assert split_labelled(singletons, np.arange(7)).mode == "images"


def test_index_tuples_for_each_loss():
    rows = np.array([[10, 11, 20, 30], [12, 10, 31, 20]])
    a1, p, a2, n = index_tuple(rows, "tuples", "contrastive")
    images = np.unique(rows)  # 10 11 12 20 30 31
    assert images[a1].tolist() == [10, 12] and images[p].tolist() == [11, 10]
    assert images[a2].tolist() == [10, 10, 12, 12] and images[n].tolist() == [20, 30, 31, 20]
    a, p, n = index_tuple(rows, "tuples", "triplet")
    assert images[a].tolist() == [10, 10, 12, 12] and images[p].tolist() == [11, 11, 10, 10]
    pairs = np.array([[5, 6, 1], [5, 7, 0]])
    a1, p, a2, n = index_tuple(pairs, "pairs", "contrastive")
    assert (a1.tolist(), p.tolist(), a2.tolist(), n.tolist()) == ([0], [1], [0], [2])
    with pytest.raises(ValueError, match="contrastive"):
        index_tuple(pairs, "pairs", "triplet")


def test_pool_miner_picks_nearest_negatives_one_per_class():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    vectors = torch.nn.functional.normalize(torch.tensor(
        [[1, 0], [1, 0.1], [1, 0.2], [0, 1], [1, 0.3], [0, 1], [-1, 0], [-1, 0.1]], dtype=torch.float32), dim=1)
    miner = PoolHardNegatives(negatives=2, pool_size=100)
    rows = miner.tuples(labels, np.arange(8), lambda idx: vectors[idx], np.random.default_rng(0))
    by_query = {row[0]: row for row in rows}
    assert by_query[0][1] == 1
    assert by_query[0][2:].tolist() == [2, 4]  # nearest of class 1, then nearest of class 2; not image 3 (class 1 again)


def test_augmentation_depends_on_seed_draw_and_image_only(encoder):
    images = [class_image(label, 0) for label in range(3)]
    inputs = lambda seed: LiveImages(encoder, images, torch.device("cpu"), RetrievalAugmentation(), workers=0, seed=seed)  # noqa: E731
    tensors = lambda source, batches, draw: [t for groups in source.batches(batches, draw) for _, t in groups]  # noqa: E731
    (alone,) = tensors(inputs(0), [np.array([2])], 1)
    together = tensors(inputs(0), [np.array([0, 1]), np.array([2])], 1)[-1]  # other images decoded first, as in another worker
    assert torch.equal(alone, together)
    assert not torch.equal(alone, tensors(inputs(0), [np.array([2])], 2)[0])  # next epoch: another crop
    assert not torch.equal(alone, tensors(inputs(1), [np.array([2])], 1)[0])  # another seed
    (plain,) = tensors(inputs(0), [np.array([2])], None)
    assert torch.equal(plain, encoder.to_tensor(images[2]).unsqueeze(0))


def test_feature_cache_matches_the_frozen_stages_and_computes_each_view_once():
    network = TrainableEncoder(Encoder(EncoderSpec(pooling="gem", image_size=SIZE)), train_layers=2)
    images = [class_image(label, 1) for label in range(3)] + [class_image(0, 2).resize((120, 64))]
    cache = CachedFeatures(network, images, torch.device("cpu"), RetrievalAugmentation(), workers=0)
    assert cache.build(np.arange(4)) == {}
    with torch.no_grad():
        for index, image in enumerate(images):
            expected = network.bottom_features(network.encoder.to_tensor(image).unsqueeze(0))[0]
            assert torch.allclose(cache.views[0][index].float(), expected, atol=2e-2 * float(expected.abs().max()))
    first = dict(cache.views[0])
    cache.add_views(np.arange(2), 2)
    augmented = [dict(view) for view in cache.views[1:]]
    assert cache.build(np.arange(4)) == {} and cache.views[0] == first  # nothing recomputed
    cache.add_views(np.arange(2), 1)
    assert cache.drawn == 2 and [dict(view) for view in cache.views[1:]] == augmented
    assert all(view[0].shape == first[0].shape and not torch.equal(view[0], first[0]) for view in augmented)


def test_stages_reproduce_the_backbone(encoder):
    stages = backbone_stages(encoder.backbone)
    assert len(stages) == 9
    net = TrainableEncoder(Encoder(EncoderSpec(pooling="gem", image_size=SIZE)), train_layers=2)
    trainable = [name for name, p in net.encoder.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(".blocks.6." in name or "conv_head" in name or ".bn2." in name for name in trainable)
    image = torch.rand(2, 3, SIZE, SIZE)
    reference = Encoder(EncoderSpec(pooling="gem", image_size=SIZE))
    with torch.no_grad():
        assert torch.allclose(net(image), reference(image), atol=1e-5)


def test_training_lowers_the_loss_and_beats_the_start(trained):
    result, _ = trained
    losses = [entry["loss"] for entry in result.history[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert result.best[result.monitor] >= result.baseline[result.monitor]
    assert result.outputs.curves.stat().st_size > 10_000 and result.outputs.checkpoint.is_file()


def test_saved_encoder_reloads_with_identical_descriptors(trained, class_folders):
    result, data = trained
    images = [Image.open(path).convert("RGB") for path in data.sources[::5]]
    first, second = load_encoder_file(result.outputs.model), load_encoder_file(result.outputs.model)
    assert first.dim == 16 and first.spec.pooling == "gem" and first.spec.image_size == SIZE
    assert first.spec.checkpoint_sha256 and first.spec.gem_p == pytest.approx(result.best["gem_p"])
    vectors = first.encode_images(images)
    assert np.array_equal(vectors, second.encode_images(images))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    off_the_shelf = Encoder(EncoderSpec(pooling="gem", image_size=SIZE))
    assert not np.allclose(off_the_shelf.encode_images(images)[:, :16], vectors, atol=1e-2)
    summary = torch.load(result.outputs.model, weights_only=True)["training"]
    assert summary["data"]["classes"] == 3 and summary["loss"] == "contrastive" and summary["best_epoch"] == result.best_epoch


def test_training_goes_through_the_default_pooling_from_the_default_encoder(class_folders, tmp_path):
    config = TrainConfig(loss="triplet", val="none", **{**FAST, "epochs": 1, "epoch_batches": 3})
    result = train(config, load_training_data(class_folders), tmp_path / "r.pt", quiet=True)
    summary = torch.load(result.outputs.model, weights_only=True)["training"]
    assert summary["recipe"] == "new classes" and summary["config"]["pooling"] == EncoderSpec().pooling == "rmac"
    assert result.baseline["gem_p"] is None
    assert [entry["epoch"] for entry in result.history] == [0, 1]
    images = [class_image(label, 7) for label in range(3)]
    start = Encoder(EncoderSpec(pooling="rmac", image_size=SIZE)).encode_images(images)
    network = TrainableEncoder(Encoder(EncoderSpec(pooling="rmac", image_size=SIZE)), train_layers=2)
    with torch.no_grad():
        staged = torch.cat([network(network.encoder.to_tensor(image).unsqueeze(0)) for image in images]).numpy()
    assert np.allclose(staged, start, atol=1e-5)  # epoch 0 is the off-the-shelf default encoder
    saved = load_encoder_file(result.outputs.model)
    assert saved.spec.pooling == "rmac" and saved.dim == start.shape[1]


def test_validation_on_images_of_the_training_classes_trains_by_the_same_classes_recipe(class_folders, tmp_path):
    data = load_training_data(class_folders)
    gentle = train(TrainConfig(val="images", **{**FAST, "epochs": 1, "lr": None, "epoch_batches": None}), data, tmp_path / "g.pt", quiet=True)
    summary = torch.load(gentle.outputs.model, weights_only=True)["training"]
    assert summary["recipe"] == "same classes"
    assert (summary["config"]["pooling"], summary["config"]["lr"], summary["config"]["epoch_batches"]) == ("gem", 1e-4, 0)
    assert gentle.baseline["gem_p"] == 3.0 and gentle.history[1]["gem_p"] != 3.0  # GeM's p trains
    assert load_encoder_file(gentle.outputs.model).spec.pooling == "gem"
    chosen = train(TrainConfig(val="images", pooling="rmac", **{**FAST, "epochs": 1}), data, tmp_path / "c.pt", quiet=True)
    summary = torch.load(chosen.outputs.model, weights_only=True)["training"]
    assert (summary["config"]["pooling"], summary["config"]["lr"], summary["config"]["epoch_batches"]) == ("rmac", 1e-3, 1)


def test_an_epoch_draws_at_least_epoch_batches_batches(class_folders, tmp_path):
    from cbir.training.trainer import Trainer

    data = load_training_data(class_folders)
    trainer = Trainer(TrainConfig(val="none", **{**FAST, "epoch_batches": 5}), data, tmp_path / "e.pt", quiet=True)
    trainer.train_images = np.arange(len(data))
    assert trainer._steps_per_epoch() == 5 and len(trainer._epoch_batches(1)) == 5
    trainer.config = TrainConfig(val="none", **{**FAST, "epoch_batches": 1})
    assert trainer._steps_per_epoch() == 2  # one pass over 24 images in batches of 12


def test_triplets_file_and_resume(class_folders, tmp_path):
    lines = [f"{class_folders}/class{c}/{s}.png,{class_folders}/class{c}/{s + 1}.png,{class_folders}/class{(c + 1) % 3}/{s}.png"
             for c in range(3) for s in range(6)]
    triplets = tmp_path / "triplets.csv"
    triplets.write_text("\n".join(lines) + "\n")
    config = TrainConfig(loss="triplet", **{**FAST, "epochs": 2})
    first = train(config, read_tuples_file(triplets), tmp_path / "t.pt", quiet=True)
    assert "triplet accuracy" in first.baseline and [e["epoch"] for e in first.history] == [0, 1, 2]
    longer = TrainConfig(loss="triplet", **{**FAST, "epochs": 3})
    resumed = train(longer, read_tuples_file(triplets), tmp_path / "t.pt", resume=True, quiet=True)
    assert [e["epoch"] for e in resumed.history] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="other data or settings"):
        train(TrainConfig(loss="contrastive", **FAST), read_tuples_file(triplets), tmp_path / "t.pt", resume=True, quiet=True)


def test_unreadable_images_are_skipped_and_reported(class_folders, tmp_path):
    root = tmp_path / "data"
    for label in range(2):
        (root / f"c{label}").mkdir(parents=True)
        for seed in range(5):
            class_image(label, seed).save(root / f"c{label}" / f"{seed}.png")
    (root / "c0" / "broken.png").write_bytes(b"\x89PNG not really")
    config = TrainConfig(miner="batch-hard", val="none", **{**FAST, "epochs": 1})
    result = train(config, load_training_data(root), tmp_path / "m.pt", quiet=True)
    assert list(result.skipped) == ["c0/broken.png"] and "not a recognised image format" in result.skipped["c0/broken.png"]


def test_medmnist_reader(tmp_path):
    path = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8), train_labels=np.arange(6).reshape(6, 1) % 2,
             test_images=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8), test_labels=np.array([[0, 1, 1], [1, 0, 0]]))
    train_split = read_medmnist(path, "train")
    assert train_split.class_labels().tolist() == [0, 1, 0, 1, 0, 1] and train_split.image(0).size == (28, 28)
    assert train_split.image(0).mode == "RGB"
    with pytest.raises(ValueError, match="multi-label"):
        read_medmnist(path, "test").class_labels()
    with pytest.raises(ValueError, match="has no split 'val'; it has test, train"):
        read_medmnist(path, "val")


def test_cli_train_then_index_and_search_with_the_encoder(trained, class_folders, tmp_path):
    result, _ = trained
    run = lambda *args: subprocess.run([sys.executable, "-m", "cbir.cli", *args], capture_output=True, text=True)  # noqa: E731
    collection = tmp_path / "collection"
    indexed = run("index", str(class_folders), "--collection", str(collection), "--encoder", str(result.outputs.model), "--json")
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["added"] == 24
    info = json.loads(run("info", "--collection", str(collection), "--json").stdout)
    assert info["encoder"]["checkpoint_sha256"] == encoder_spec_from_file(result.outputs.model).checkpoint_sha256
    assert info["spaces"]["image"]["dim"] == 16
    found = run("search", str(class_folders / "class1" / "3.png"), "--collection", str(collection), "--json", "-k", "1")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["uri"].endswith("class1/3.png")
    clash = run("index", str(class_folders), "--collection", str(collection), "--encoder", str(result.outputs.model), "--backbone", "resnet50")
    assert clash.returncode == 2 and "--encoder FILE already fixes" in clash.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nonsense")
    refused = run("index", str(class_folders), "--collection", str(tmp_path / "c2"), "--encoder", str(bad))
    assert refused.returncode == 2 and "not a readable encoder file" in refused.stderr


def test_search_finds_a_moved_encoder_file_of_a_collection_at_its_own_size_and_precision(trained, class_folders, tmp_path):
    result, _ = trained
    run = lambda *args: subprocess.run([sys.executable, "-m", "cbir.cli", *args], capture_output=True, text=True)  # noqa: E731
    model = tmp_path / "model.pt"
    model.write_bytes(result.outputs.model.read_bytes())
    collection = tmp_path / "collection"
    indexed = run("index", str(class_folders), "--collection", str(collection), "--encoder", str(model), "--size", "72",
                  "--precision", "bf16")
    assert indexed.returncode == 0, indexed.stderr
    moved = model.rename(tmp_path / "moved.pt")
    query = str(class_folders / "class2" / "5.png")
    lost = run("search", query, "--collection", str(collection), "--local")
    assert lost.returncode != 0 and "--encoder" in lost.stderr + lost.stdout
    found = run("search", query, "--collection", str(collection), "--encoder", str(moved), "--json", "-k", "1")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["uri"].endswith("class2/5.png")
    other = tmp_path / "other.pt"
    other.write_bytes(moved.read_bytes() + b"changed")
    refused = run("search", query, "--collection", str(collection), "--encoder", str(other))
    assert refused.returncode != 0


def test_cli_evaluate_measures_the_trained_encoder(trained, class_folders, tmp_path):
    result, data = trained
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, "-m", "cbir.cli", "evaluate", "labeled", str(class_folders), "--encoder", str(result.outputs.model),
         "--json", str(out), "--cache", str(tmp_path / "cache")], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    written = json.loads(out.read_text())
    assert written["config"]["encoder"] == {"encoder_file": str(result.outputs.model)} and written["config"]["queries"] == 24
    vectors = load_encoder_file(result.outputs.model).encode_images([Image.open(p).convert("RGB") for p in data.sources])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = data.labels[similarity.argmax(axis=1)]
    assert written["metrics"]["P@1"] == pytest.approx(100 * np.mean(nearest == data.labels), abs=1e-3)


def test_cli_train_rejects_unknown_data(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    run = subprocess.run([sys.executable, "-m", "cbir.cli", "train", str(tmp_path / "notes.md"), "--out", str(tmp_path / "m.pt")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "cannot tell what" in run.stderr


def test_whole_network_trains_with_pool_mining(class_folders, tmp_path):
    config = TrainConfig(loss="triplet", miner="pool", negatives=2, train_layers="all", val="none", **{**FAST, "epochs": 1})
    result = train(config, load_training_data(class_folders), tmp_path / "all.pt", quiet=True)
    assert np.isfinite(result.history[-1]["loss"]) and result.best_epoch == 1
    trained_stem = load_encoder_file(tmp_path / "all.pt").backbone.body.conv_stem.weight
    pretrained_stem = Encoder(EncoderSpec(image_size=SIZE)).backbone.body.conv_stem.weight
    assert not torch.equal(trained_stem, pretrained_stem)


def test_losses_and_miners_are_built_by_name():
    from pytorch_metric_learning import losses, miners

    from cbir.training.losses import LOSSES, MINERS, make_batch_miner, make_loss

    assert LOSSES.names() == ("contrastive", "triplet")
    assert MINERS.names() == ("batch-hard", "semi-hard", "pool", "none")
    assert make_loss("triplet").margin == 0.1
    contrastive = make_loss("contrastive", margin=0.5, pos_margin=0.1)
    assert isinstance(contrastive, losses.ContrastiveLoss) and (contrastive.pos_margin, contrastive.neg_margin) == (0.1, 0.5)
    assert make_batch_miner("semi-hard", "triplet", 0.3).margin == 0.3
    assert make_batch_miner("semi-hard", "contrastive", 0.7).margin == 0.1
    assert isinstance(make_batch_miner("batch-hard", "triplet"), miners.BatchHardMiner)
    assert make_batch_miner("pool", "triplet") is None and make_batch_miner("none", "contrastive") is None
    with pytest.raises(ValueError, match="unknown loss 'arcface': choose one of contrastive, triplet"):
        make_loss("arcface")
    with pytest.raises(ValueError, match="below the negative margin"):
        make_loss("contrastive", margin=0.2, pos_margin=0.3)
