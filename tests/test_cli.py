import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from cbir.cli import app

runner = CliRunner()


@pytest.fixture
def indexed(tmp_path, image_folder):
    collection = tmp_path / "collection"
    result = runner.invoke(app, ["index", str(image_folder), "--collection", str(collection), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    return collection


def test_index_reports_json(tmp_path, image_folder):
    result = runner.invoke(app, ["index", str(image_folder), "-c", str(tmp_path / "c"), "--workers", "0", "--json"])
    report = json.loads(result.stdout)
    assert report["added"] == 12 and report["skipped"] == []


def test_search_json_shape(indexed, image_folder):
    query = image_folder / "img_0002.jpg"
    result = runner.invoke(app, ["search", str(query), "-c", str(indexed), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["query"] == str(query)
    assert [r["rank"] for r in payload["results"]] == [1, 2, 3]
    assert set(payload["results"][0]) >= {"rank", "score", "uri", "kind", "item_id"}
    assert payload["results"][0]["uri"].endswith("img_0002.jpg")


def test_search_grid_picture(indexed, image_folder, tmp_path):
    grid = tmp_path / "grid.png"
    result = runner.invoke(app, ["search", str(image_folder / "img_0001.jpg"), "-c", str(indexed), "-k", "4", "--grid", str(grid)])
    assert result.exit_code == 0, result.output
    with Image.open(grid) as picture:
        assert picture.width > 4 * 180 and picture.height > 180


def test_info_json(indexed):
    result = runner.invoke(app, ["info", "-c", str(indexed), "--json"])
    details = json.loads(result.stdout)
    assert details["items"] == 12 and details["by_kind"] == {"image": 12}
    assert details["encoder"]["backbone"] == "efficientnet_lite0" and details["encoder"]["pooling"] == "rmac"


def test_mismatched_encoder_option_is_an_error(indexed, image_folder):
    result = runner.invoke(app, ["index", str(image_folder), "-c", str(indexed), "--pooling", "gem"])
    assert result.exit_code == 2
    assert "different encoder" in result.output


def test_search_of_a_broken_query_is_a_clear_error(indexed, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    result = runner.invoke(app, ["search", str(broken), "-c", str(indexed)])
    assert result.exit_code == 2 and "not a recognised image format" in result.output


def test_whiten_from_another_collection(indexed, tmp_path):
    from tests.conftest import write_images

    other = tmp_path / "other-images"
    write_images(other, 20, start=500)
    assert runner.invoke(app, ["index", str(other), "-c", str(tmp_path / "other"), "--workers", "0"]).exit_code == 0
    result = runner.invoke(app, ["whiten", "-c", str(indexed), "--from", str(tmp_path / "other"), "--dim", "16"])
    assert result.exit_code == 0, result.output
    assert "1280 -> 16" in result.output
    assert json.loads(runner.invoke(app, ["info", "-c", str(indexed), "--json"]).stdout)["spaces"]["image"]["whitening"]


def test_demo_runs_offline_and_finds_every_original(tmp_path, capsys):
    from cbir.demo import QUERY_SOURCES, run_demo

    assert run_demo(tmp_path / "demo") == len(QUERY_SOURCES)
    assert (tmp_path / "demo" / "grid-cat.png").is_file()
    told = " ".join(capsys.readouterr().err.split())
    assert "Skipped files" in told and "broken.jpg" in told and "[(" not in told  # a table, not a Python list
