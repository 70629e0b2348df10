"""Tenth probe (multi-step stories by someone who did not write the earlier fixes): what a careless user still broke.
`gmdrit data download NAME --to DIR --force`, where DIR/NAME was a run folder or a folder of runs (a careless
`--to runs`), deleted the runs with their checkpoints: the "incomplete, pass --force" message even suggested it.
Misleading: a redirect loop was a three-line error (urllib's text); `DIR/model.onnx` of an ONNX export given to
eval, interpolate or export was "not a model file" where its folder was named an ONNX export. Export --force into
the other kind's folder mixed two exports (translate kept running the old ONNX graphs)."""

from __future__ import annotations

import http.server
import shutil
import threading
import zipfile

from conftest import assert_one_line_error, make_dataset

# -- data download --force never deletes a run's checkpoints -----------------------------------------------------------


def _archive(tmp_path, name="summer2winter_yosemite"):
    archive = tmp_path / "mirror.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for split in ("trainA", "trainB", "testA", "testB"):
            z.writestr(f"{name}/{split}/0.jpg", b"not checked by count")
    return archive


def test_data_download_force_never_deletes_a_run_or_a_folder_of_runs(cli, run_dir, tmp_path):
    url = _archive(tmp_path).as_uri()
    to = tmp_path / "to"
    shutil.copytree(run_dir, to / "summer2winter_yosemite")  # a run named like the dataset
    shutil.copytree(run_dir, tmp_path / "runs" / "summer2winter_yosemite" / "mine")  # a folder of runs
    for where in (to, tmp_path / "runs"):
        for force in ([], ["--force"]):
            proc = cli("data", "download", "summer2winter_yosemite", "--to", where, "--url", url, *force)
            assert_one_line_error(proc, "holds a run's checkpoints", "pass another --to")
    assert (to / "summer2winter_yosemite" / "checkpoints" / "latest").is_file()  # was deleted by --force
    assert (tmp_path / "runs" / "summer2winter_yosemite" / "mine" / "checkpoints" / "latest").is_file()
    # a folder without checkpoints is still replaced with --force, as documented
    (tmp_path / "other" / "summer2winter_yosemite").mkdir(parents=True)
    proc = cli("data", "download", "summer2winter_yosemite", "--to", tmp_path / "other", "--url", url, "--force")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "other" / "summer2winter_yosemite" / "trainA" / "0.jpg").is_file()


# -- a redirect loop is one line ---------------------------------------------------------------------------------------


class _Loop(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(302)
        self.send_header("Location", self.path)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirect_loop_is_one_line(cli, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Loop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.zip"
        proc = cli("data", "download", "facades", "--to", tmp_path / "d", "--url", url, "--timeout", "5")
    finally:
        server.shutdown()
    assert_one_line_error(proc, "redirects in a loop")  # was three lines of urllib's text
    assert not (tmp_path / "d").exists()


# -- an ONNX export's model.onnx given where torch reads the model is named --------------------------------------------


def test_an_onnx_file_given_to_eval_interpolate_or_export_is_named(cli, tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"graph")
    image = make_dataset(tmp_path / "data", per_domain=1) / "testA" / "0.png"
    for args in (
        ("eval", folder / "model.onnx", "--out", tmp_path / "eval"),
        ("interpolate", image, "-d", "orange", "-c", folder / "model.onnx", "-o", tmp_path / "out"),
        ("export", folder / "model.onnx", "-o", tmp_path / "again"),
    ):
        assert_one_line_error(cli(*args), "is an ONNX export")  # was "is not a model file"
    assert not (tmp_path / "eval").exists() and not (tmp_path / "out").exists()


# -- one export per folder: a safetensors export never lands beside an ONNX export, nor the reverse -------------------


def test_an_export_never_lands_beside_an_export_of_the_other_kind(cli, run_dir, tmp_path):
    onnx_folder = tmp_path / "onnx"
    assert cli("export", run_dir, "--format", "onnx", "-o", onnx_folder).returncode == 0
    graphs = (onnx_folder / "model.onnx").read_bytes()
    for force in ([], ["--force"]):  # was: --force wrote model.safetensors beside it, and translate ran the old graphs
        assert_one_line_error(cli("export", run_dir, "-o", onnx_folder, *force), "holds an ONNX export")
    assert not (onnx_folder / "model.safetensors").exists() and (onnx_folder / "model.onnx").read_bytes() == graphs
    plain = tmp_path / "plain"
    assert cli("export", run_dir, "-o", plain).returncode == 0
    config = (plain / "config.yaml").read_bytes()
    for force in ([], ["--force"]):  # was: --force replaced the safetensors export's config.yaml
        assert_one_line_error(cli("export", run_dir, "--format", "onnx", "-o", plain, *force), "holds a safetensors")
    assert not (plain / "onnx.json").exists() and (plain / "config.yaml").read_bytes() == config
