"""Issue 25, fifth probe (by someone who did not write the earlier fixes): what a careless user still broke.

`gmdrit report` of a run holding a BicycleGAN benchmark (a row the report did not time) was a traceback, and so was
any eval.json or benchmark.json field of another shape than gmdrit writes (a damaged or hand-edited file), while a
task's domain name with '../' in it sent the composite picture outside the report's folder; one unreadable
translation PNG stopped the whole report with "choose another path". A `sampling.json` holding `1e999` was blamed on
a `--temperature inf` the user never gave, and a non-list history was a traceback at the next sweep."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_one_line_error

# -- report: the run's JSON files are data to check, not to trust -------------------------------------------------


def _eval(tmp_path, run, name: str, report: dict) -> None:
    folder = run / "eval" / name
    (folder / "apple2orange").mkdir(parents=True)
    (folder / "eval.json").write_text(json.dumps(report))


def test_report_shows_a_bicyclegan_benchmark_and_leaves_out_damaged_json(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "benchmark").mkdir()
    bench = {"environment": {"device": "cpu"}, "rows": [{"resolution": 128, "label": "BicycleGAN", "median": 2.0}]}
    bench["rows"][0]["report_seconds"] = None  # not timed by the report: was a TypeError in the page
    (run / "benchmark" / "benchmark.json").write_text(json.dumps(bench))
    (run / "benchmark.json").write_text(json.dumps({"rows": [{"task": 1}]}))  # was a KeyError in the chart
    task = {"source": "apple", "target": "orange", "outputs": 1}
    base = {"tasks": [task], "model": {}, "settings": {"metrics": ["ndb"]}}
    _eval(tmp_path, run, "temperature", {**base, "settings": {"temperature": "hot"}})
    _eval(tmp_path, run, "cluster", {**base, "cluster": {"accuracy": 0.5}})
    _eval(tmp_path, run, "data", {**base, "data": [1]})
    _eval(tmp_path, run, "cell", {**base, "tasks": [{**task, "ndb": "x"}]})
    _eval(tmp_path, run, "escape", {**base, "tasks": [{**task, "source": "../../x"}]})
    _eval(tmp_path, run, "good", base)
    (run / "eval" / "good" / "apple2orange" / "a_0.png").write_text("not a png")  # stopped the whole report

    proc = cli("report", run, "--out", tmp_path / "page")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for name in ("temperature", "cluster", "data", "cell", "escape"):
        assert f"eval/{name}/eval.json" in proc.stdout
    assert "a row without resolution and label" in proc.stdout
    page = (tmp_path / "page" / "index.html").read_text()
    assert "BicycleGAN" in page and "good" in page
    assert not (tmp_path / "page" / "assets" / "1-run" / "x2orange.png").exists()


# -- sampling.json: a damaged one is named, not blamed on an option -------------------------------------------------


@pytest.mark.parametrize(
    "record, fragment",
    [
        ('{"sample_temperature": 1e999}', "sample_temperature inf is not a number above 0 and at most 100"),
        ('{"sample_temperature": -1}', "sample_temperature -1 is not a number above 0 and at most 100"),
        ('{"sample_temperature": 0.5, "history": 5}', "history is not a list"),
    ],
)
def test_a_damaged_sampling_json_is_named_in_one_line(cli, run_dir, tmp_path, record, fragment):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "sampling.json").write_text(record)
    image = run_dir.parent / "data" / "testA" / "0.png"
    proc = cli("translate", image, "--domain", "orange", "--run", run, "--out", tmp_path / "out", "-n", "1")
    assert_one_line_error(proc, "sampling.json is damaged", fragment)
    assert "--temperature" not in proc.stderr


# -- data download: a transfer is bounded, whatever the server says ---------------------------------------------------


@pytest.fixture
def endless_server():
    """An HTTP server on 127.0.0.1 whose every answer is an endless body with no Content-Length."""
    import http.server
    import threading

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/facades.zip"
    server.shutdown()
    server.server_close()


def test_a_download_stops_at_its_announced_size_or_the_limit(tmp_path, endless_server):
    from gmdrit_cli.data.download import DownloadError, fetch

    part, manual = tmp_path / ".x.part", tmp_path / "x.zip"
    # a device file (announced as 0 bytes) filled the disk at about 200 MB/s
    with pytest.raises(DownloadError, match="sent more than the 0 bytes it announced"):
        fetch("file:///dev/zero", part, manual_path=manual)
    assert not part.exists()
    # no size announced: stopped at the limit
    with pytest.raises(DownloadError, match="more than any dataset archive"):
        fetch(endless_server, part, manual_path=manual, max_bytes=1 << 20)
    assert not part.exists()
    big = tmp_path / "big.zip"
    big.write_bytes(b"\0" * 4096)
    with pytest.raises(DownloadError, match="announces 4,096 bytes, more than any dataset archive"):
        fetch(big.as_uri(), part, manual_path=manual, max_bytes=1024)
    assert not part.exists()


# -- a domain name is a plain name: it names folders and files ----------------------------------------------------


@pytest.mark.parametrize("domain", ["../../../escape", "a/b", "a\\\\b", "..", " "])
def test_a_domain_name_that_is_a_path_is_refused(cli, domain):
    # '../../../escape' trained, then eval wrote ESCAPE2orange/ three folders above --out, translate failed oddly
    proc = cli("train", "--preset", "quickstart", "--dry-run", "--set", f"data.domains=['{domain}', orange]")
    assert_one_line_error(proc, "cannot name a domain", "plain name")


def test_data_cache_into_its_own_source_names_the_folder_not_a_config_key(cli, tmp_path):
    source = tmp_path / "photos"
    (source / "trainA").mkdir(parents=True)
    (source / "trainA" / "0.png").write_bytes(b"x")
    proc = cli("data", "cache", source, "--to", source)  # blamed speed.data_cache, which `data cache` has not
    assert_one_line_error(proc, "the cache folder", "lies inside the data folder")
    assert "speed.data_cache" not in proc.stderr
