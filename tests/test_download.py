"""`gmdrit data`: download, resume, checks and unpacking against an HTTP server on 127.0.0.1 started by
the tests themselves (no other network)."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest

from conftest import UNPAIRED_LAYOUT, archive_files, assert_one_line_error, free_port, make_zip, png
from gmdrit_cli.data.download import (
    DATASETS,
    PAIRED_SUFFIX,
    DatasetSpec,
    DownloadError,
    dataset_state,
    download_dataset,
    find_dataset,
    list_datasets,
)

PAIRED_LAYOUT = {"trainA": 3, "trainB": 2, "testA": 1, "testB": 1}
PAIRED_LAYOUT = {"train": 2, "val": 1}


def make_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; ``requests`` records each request's headers."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    status: Optional[int] = None  # answer every request with this error status
    cut_after: Optional[int] = None  # close the connection after this many body bytes (once)
    ignore_range: bool = False
    corrupt: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.requests.append(dict(self.headers))
        body = state.files.get(self.path)
        if state.status or body is None:
            self.send_error(state.status or 404)
            return
        if state.corrupt:
            middle = len(body) // 2
            body = body[:middle] + bytes(b ^ 0xFF for b in body[middle : middle + 64]) + body[middle + 64 :]
        start, wanted = 0, self.headers.get("Range")
        if wanted and not state.ignore_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.cut_after is not None:
            payload, state.cut_after = payload[: state.cut_after], None
        self.wfile.write(payload)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState(base=f"http://127.0.0.1:{httpd.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.state  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def unpaired_spec(server: ServerState, body: bytes, counts: Optional[dict[str, int]] = None) -> DatasetSpec:
    server.files["/tiny.zip"] = body
    return DatasetSpec(
        "tiny",
        "unpaired",
        server.base + "/tiny.zip",
        "zip",
        tuple(UNPAIRED_LAYOUT),
        UNPAIRED_LAYOUT if counts is None else counts,
        size=len(body),
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the core -------------------------------------------------------------------------------------


def test_zip_with_top_folder_is_downloaded_checked_and_unpacked(server, tmp_path):
    files = archive_files(UNPAIRED_LAYOUT, top="tiny")
    body = make_zip(files, top="tiny")
    spec = unpaired_spec(server, body)
    seen: list[tuple[str, int, Optional[int]]] = []
    result = download_dataset(spec, tmp_path / "data", progress=lambda *a: seen.append(a))
    assert result.path == tmp_path / "data" / "tiny" and not result.already_present
    assert tree(result.path) == {name.removeprefix("tiny/"): data for name, data in files.items()}
    assert result.counts == UNPAIRED_LAYOUT and result.downloaded == len(body) and result.resumed_from == 0
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["tiny"]  # no archive, .part or temp folder
    assert ("download", len(body), len(body)) in seen and {s for s, *_ in seen} == {"download", "check", "unpack"}
    assert "Range" not in server.requests[0]


def test_tar_without_top_folder_and_keep_archive(server, tmp_path):
    files = archive_files(PAIRED_LAYOUT, top=None)
    server.files["/pairs.tar.gz"] = body = make_tar(files)
    spec = DatasetSpec("pairs", "paired", server.base + "/pairs.tar.gz", "tar.gz", ("train", "val"), PAIRED_LAYOUT)
    result = download_dataset(spec, tmp_path, keep_archive=True)
    assert tree(tmp_path / "pairs") == files
    assert result.archive == tmp_path / "pairs.tar.gz" and result.archive.read_bytes() == body
    assert dataset_state(spec, tmp_path) == "present"


def test_interrupted_download_resumes_with_range(server, tmp_path):
    body = make_zip(archive_files(UNPAIRED_LAYOUT, top="tiny"), top="tiny")
    spec = unpaired_spec(server, body)
    server.cut_after = 700
    with pytest.raises(DownloadError, match=r"stopped at 700 of \d+ bytes.*kept: run the same command again"):
        download_dataset(spec, tmp_path)
    part = tmp_path / ".tiny.part"
    assert part.stat().st_size == 700 and not (tmp_path / "tiny").exists()
    assert dataset_state(spec, tmp_path) == "partial download"
    result = download_dataset(spec, tmp_path, keep_archive=True)
    assert server.requests[-1]["Range"] == "bytes=700-"
    assert result.resumed_from == 700 and result.downloaded == len(body) - 700
    assert (tmp_path / "tiny.zip").read_bytes() == body and not part.exists()
    assert tree(tmp_path / "tiny")["trainA/0.png"] == png(len("trainA"))


def test_ctrl_c_keeps_the_part_for_resuming(server, tmp_path):
    body = make_zip(archive_files(UNPAIRED_LAYOUT, top=None))
    spec = unpaired_spec(server, body)

    def interrupt(stage: str, done: int, total: Optional[int]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_dataset(spec, tmp_path, progress=interrupt)
    assert (tmp_path / ".tiny.part").stat().st_size > 0
    assert download_dataset(spec, tmp_path).resumed_from > 0
    assert server.requests[-1]["Range"].startswith("bytes=")


@pytest.mark.parametrize(
    "stale, ignore_range",
    [(b"x" * 300, True), (b"x" * 9000, False), (None, False)],
    ids=["server-ignores-range", "part-too-long-416", "part-complete-416"],
)
def test_unusable_or_complete_part_files(server, tmp_path, stale, ignore_range):
    body = make_zip(archive_files(UNPAIRED_LAYOUT, top=None))
    spec = unpaired_spec(server, body)
    server.ignore_range = ignore_range
    (tmp_path / ".tiny.part").write_bytes(body if stale is None else stale)
    assert len(body) < 9000
    result = download_dataset(spec, tmp_path, keep_archive=True)
    assert (tmp_path / "tiny.zip").read_bytes() == body
    assert result.counts == UNPAIRED_LAYOUT
    assert result.downloaded == (0 if stale is None else len(body))


def test_corrupted_archive_is_removed_and_destination_untouched(server, tmp_path):
    body = make_zip(archive_files(UNPAIRED_LAYOUT, top="tiny"), top="tiny")
    spec = unpaired_spec(server, body)
    download_dataset(spec, tmp_path)
    before = tree(tmp_path / "tiny")
    server.corrupt = True
    with pytest.raises(DownloadError) as info:
        download_dataset(spec, tmp_path, force=True)
    message = str(info.value)
    assert "damaged" in message and "removed" in message and "nothing was unpacked" in message and "\n" not in message
    assert not (tmp_path / ".tiny.part").exists() and not (tmp_path / "tiny.zip").exists()
    assert tree(tmp_path / "tiny") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_wrong_image_count_or_missing_folder_is_rejected(server, tmp_path):
    spec = unpaired_spec(server, make_zip(archive_files(UNPAIRED_LAYOUT, top=None)), {**UNPAIRED_LAYOUT, "trainA": 4})
    with pytest.raises(DownloadError, match=r"trainA/ has 3 images instead of 4"):
        download_dataset(spec, tmp_path)
    spec = unpaired_spec(server, make_zip(archive_files({"trainA": 1, "trainB": 1, "testA": 1}, top="tiny")), {})
    with pytest.raises(DownloadError, match=r"no testB folder"):
        download_dataset(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("evil", ["../evil.png", "/tmp/evil.png", "tiny/../../evil.png"])
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_path_traversal_members_are_rejected(server, tmp_path, evil, fmt):
    files = {**archive_files(UNPAIRED_LAYOUT, top="tiny"), evil: png(1)}
    server.files[f"/tiny.{fmt}"] = make_zip(files) if fmt == "zip" else make_tar(files)
    spec = DatasetSpec("tiny", "unpaired", f"{server.base}/tiny.{fmt}", fmt, tuple(UNPAIRED_LAYOUT))
    data = tmp_path / "deep" / "data"
    with pytest.raises(DownloadError, match="unsafe member path"):
        download_dataset(spec, data)
    # nothing unpacked; the folders the call made, left empty, are gone
    assert not (tmp_path / "deep").exists() and not list(tmp_path.rglob("evil.png"))


def test_404_unreachable_and_silent_servers_name_the_url_and_what_to_do(server, tmp_path):
    spec = unpaired_spec(server, b"unused")
    with pytest.raises(DownloadError, match=r"/missing.zip answered 404 Not Found.*--url"):
        download_dataset(spec, tmp_path, url=server.base + "/missing.zip")
    assert not (tmp_path / ".tiny.part").exists()
    url = f"http://127.0.0.1:{free_port()}/tiny.zip"
    with pytest.raises(DownloadError) as info:
        download_dataset(spec, tmp_path, url=url, timeout=5)
    assert f"cannot reach {url}" in str(info.value) and "--url" in str(info.value)
    assert str(tmp_path / "tiny.zip") in str(info.value)  # where to put a file fetched by hand
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/tiny.zip"
        with pytest.raises(DownloadError, match=rf"cannot reach {url} \(timed out\)"):
            download_dataset(spec, tmp_path, url=url, timeout=0.3)


def test_present_dataset_is_left_alone_and_incomplete_needs_force(server, tmp_path):
    body = make_zip(archive_files(UNPAIRED_LAYOUT, top="tiny"), top="tiny")
    spec = unpaired_spec(server, body)
    download_dataset(spec, tmp_path)
    asked = len(server.requests)
    result = download_dataset(spec, tmp_path)
    assert result.already_present and result.counts == UNPAIRED_LAYOUT and len(server.requests) == asked
    (tmp_path / "tiny" / "trainB" / "0.png").unlink()
    assert dataset_state(spec, tmp_path) == "incomplete"
    with pytest.raises(DownloadError, match=r"incomplete \(trainB/ has 1 images instead of 2\).*--force"):
        download_dataset(spec, tmp_path)
    assert download_dataset(spec, tmp_path, force=True).counts == UNPAIRED_LAYOUT


def test_archive_fetched_by_hand_is_used(tmp_path):
    spec = DatasetSpec("tiny", "unpaired", f"http://127.0.0.1:{free_port()}/tiny.zip", "zip", tuple(UNPAIRED_LAYOUT))
    (tmp_path / "tiny.zip").write_bytes(make_zip(archive_files(UNPAIRED_LAYOUT, top="tiny"), top="tiny"))
    result = download_dataset(spec, tmp_path)
    assert result.downloaded == 0 and result.counts == UNPAIRED_LAYOUT
    assert (tmp_path / "tiny.zip").is_file() and result.archive == tmp_path / "tiny.zip"  # the user's: kept


def test_registry_names_urls_and_unknown_names():
    assert {"apple2orange", "horse2zebra", "facades", "facades" + PAIRED_SUFFIX, "edges2shoes"} <= set(DATASETS)
    assert DATASETS["facades"].url.endswith("/cyclegan/datasets/facades.zip")
    assert DATASETS["facades-paired"].url.endswith("/pix2pix/datasets/facades.tar.gz")
    assert DATASETS["apple2orange"].counts == {"trainA": 995, "trainB": 1019, "testA": 266, "testB": 248}
    assert all(s.kind == ("unpaired" if s.archive == "zip" else "paired") for s in DATASETS.values())
    with pytest.raises(
        DownloadError, match=r"unknown dataset 'appel2orange' \(did you mean 'apple2orange'\?\).*gmdrit data list"
    ):
        find_dataset("appel2orange")
    with pytest.raises(DownloadError, match=r"unknown dataset 'zzz'; `gmdrit data list`"):
        find_dataset("zzz")
    assert [state for _, state in list_datasets(Path("/nonexistent"))] == ["absent"] * len(DATASETS)


# -- through the CLI ------------------------------------------------------------------------------


def test_cli_list_shows_every_dataset_and_what_is_present(cli, tmp_path):
    for folder in ("train", "val"):
        (tmp_path / "facades-paired" / folder).mkdir(parents=True)
    proc = cli("data", "list", "--to", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"present: a complete folder {tmp_path}/NAME (--to DIR looks elsewhere)"
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == set(DATASETS)
    assert "trainA 995, trainB 1019, testA 266, testB 248" in rows["apple2orange"]
    assert rows["facades-paired"].rstrip().endswith("yes") and not rows["facades"].rstrip().endswith("yes")
    assert "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip" in rows["horse2zebra"]


def test_cli_download_from_a_mirror_and_its_errors(cli, server, tmp_path):
    server.files["/facades.zip"] = make_zip(archive_files(UNPAIRED_LAYOUT, top="facades"), top="facades")
    server.files["/apple2orange.zip"] = make_zip(archive_files(UNPAIRED_LAYOUT, top=None))
    proc = cli("data", "download", "facades", "--to", str(tmp_path), "--url", server.base + "/facades.zip")
    assert proc.returncode == 0, proc.stderr
    assert f"unpacked into {tmp_path / 'facades'}" in proc.stdout and "gmdrit train --set data.root=" in proc.stdout
    assert len(list((tmp_path / "facades" / "trainA").iterdir())) == 3
    proc = cli("data", "download", "facades", "--to", str(tmp_path))  # no network needed: already there
    assert proc.returncode == 0 and "already complete" in proc.stdout
    assert_one_line_error(cli("data", "download", "appel2orange"), "did you mean 'apple2orange'", "gmdrit data list")
    assert_one_line_error(
        cli("data", "download", "apple2orange", "--to", str(tmp_path), "--url", server.base + "/apple2orange.zip"),
        "trainA/ has 3 images instead of 995",
    )
    assert_one_line_error(
        cli("data", "download", "apple2orange", "--to", str(tmp_path), "--url", server.base + "/nothing.zip"),
        "404",
        "--url",
    )
    port = free_port()
    assert_one_line_error(
        cli("data", "download", "horse2zebra", "--to", str(tmp_path), "--url", f"http://127.0.0.1:{port}/h.zip"),
        "cannot reach",
        "--url",
    )


def test_train_on_a_missing_known_dataset_names_the_download_command(cli, tmp_path):
    root = tmp_path / "data" / "apple2orange"
    proc = cli("train", "--preset", "mdmm_baseline", "--set", f"data.root={root}", "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(proc, "does not exist", f"gmdrit data download apple2orange --to {tmp_path / 'data'}")
