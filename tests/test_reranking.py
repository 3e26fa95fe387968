"""alpha-QE and DBA on tiny vectors, and exhaustive ranking."""

import numpy as np
import pytest

from cbir.search.ranking import full_ranking, nearest
from cbir.search.reranking import Reranking, database_augmentation, query_expansion


def unit(*values):
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


DATABASE = np.stack([unit(0.8, 0.6), unit(0, 1), unit(-1, 0)])


def test_full_ranking_orders_by_cosine_and_puts_excluded_last():
    queries = np.stack([unit(1, 0), unit(0, 1)])
    assert full_ranking(queries, DATABASE).tolist() == [[0, 1, 2], [1, 0, 2]]
    assert full_ranking(queries, DATABASE, exclude=np.array([0, -1])).tolist() == [[1, 2, 0], [1, 0, 2]]


def test_full_ranking_breaks_ties_by_index():
    database = np.stack([unit(0, 1), unit(1, 0), unit(1, 0)])
    assert full_ranking(unit(1, 0)[None], database).tolist() == [[1, 2, 0]]


def test_nearest_returns_best_first_with_similarities():
    similarities, indices = nearest(unit(1, 0)[None], DATABASE, 2)
    assert indices.tolist() == [[0, 1]]
    assert similarities[0] == pytest.approx([0.8, 0.0], abs=1e-6)


def test_average_query_expansion():
    expanded = query_expansion(unit(1, 0)[None], DATABASE, n=1, alpha=0)
    assert expanded[0] == pytest.approx(unit(1.8, 0.6), abs=1e-6)


def test_alpha_weights_neighbours_by_similarity_power():
    expanded = query_expansion(unit(1, 0)[None], DATABASE, n=1, alpha=3)
    assert expanded[0] == pytest.approx(unit(1 + 0.512 * 0.8, 0.512 * 0.6), abs=1e-6)


def test_negative_similarities_get_no_weight():
    # the only neighbour left after excluding item 0 and 1 is opposite to the query
    expanded = query_expansion(unit(1, 0)[None], DATABASE[[2]], n=1, alpha=3)
    assert expanded[0] == pytest.approx(unit(1, 0), abs=1e-6)


def test_query_expansion_skips_the_excluded_item():
    expanded = query_expansion(unit(1, 0)[None], DATABASE, n=1, alpha=0, exclude=np.array([0]))
    assert expanded[0] == pytest.approx(unit(1, 1), abs=1e-6)  # neighbour is item 1


def test_database_augmentation_uses_other_items():
    database = np.stack([unit(1, 0), unit(0.8, 0.6), unit(0, 1)])
    augmented = database_augmentation(database, n=1, alpha=0)
    assert augmented[0] == pytest.approx(unit(1.8, 0.6), abs=1e-6)
    assert augmented[1] == pytest.approx(unit(1.8, 0.6), abs=1e-6)
    assert augmented[2] == pytest.approx(unit(0.8, 1.6), abs=1e-6)
    assert np.linalg.norm(augmented, axis=1) == pytest.approx(1.0)


def test_reranking_applies_dba_before_query_expansion():
    database = np.stack([unit(1, 0), unit(0.8, 0.6), unit(0, 1)])
    query = unit(1, 0.1)[None]
    queries, augmented = Reranking(qe=1, qe_alpha=0, dba=1, dba_alpha=0).apply(query, database)
    expected_database = database_augmentation(database, 1, 0)
    assert augmented == pytest.approx(expected_database)
    assert queries == pytest.approx(query_expansion(query, expected_database, 1, 0))


def test_switched_off_reranking_changes_nothing():
    queries, database = Reranking().apply(DATABASE[:1], DATABASE)
    assert np.array_equal(queries, DATABASE[:1]) and np.array_equal(database, DATABASE)
    assert Reranking().describe() == {}


def test_rejects_negative_neighbours():
    with pytest.raises(ValueError, match="neighbours"):
        Reranking(qe=-1)


def test_expanded_search_in_a_collection(tmp_path):
    from cbir.collection.collection import Collection
    from cbir.encoders.encoder import EncoderSpec
    from cbir.search.reranking import expanded_search
    from tests.conftest import write_images

    paths = write_images(tmp_path / "images", 6, size=(96, 72))
    with Collection.create(tmp_path / "c", EncoderSpec(pooling="gem", image_size=64)) as store:
        store.add([tmp_path / "images"])
        ids, raw = store.vectors()
        query = store.encode(paths[0])
        for whitened in (False, True):
            if whitened:
                store.learn_whitening(dim=4)
            space = store.whitening().apply if whitened else (lambda v: v)
            first = store.search(paths[0], k=2)
            neighbours = space(raw[[list(ids).index(hit.item_id) for hit in first]])
            weights = np.array([hit.score for hit in first]) ** 3
            expected = space(query[None])[0] + weights @ neighbours
            expected /= np.linalg.norm(expected)
            results = expanded_search(store, paths[0], k=6, neighbours=2, alpha=3)
            index_vectors = space(raw)
            expected_order = [int(ids[i]) for i in np.argsort(-(index_vectors @ expected), kind="stable")]
            assert [hit.item_id for hit in results] == expected_order
            assert results[0].score == pytest.approx(float(np.max(index_vectors @ expected)), abs=1e-5)


def test_search_command_takes_query_expansion(tmp_path):
    import json

    from typer.testing import CliRunner

    from cbir.cli import app
    from tests.conftest import write_images

    paths = write_images(tmp_path / "images", 5, size=(96, 72))
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(tmp_path / "images"), "-c", str(tmp_path / "c"), "--size", "64"]).exit_code == 0
    result = runner.invoke(app, ["search", str(paths[2]), "-c", str(tmp_path / "c"), "--qe", "2", "--json", "-k", "3"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["results"]
    assert len(hits) == 3 and hits[0]["uri"].endswith(paths[2].name)
