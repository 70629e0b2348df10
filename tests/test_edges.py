"""`gmdrit data edges`: edge maps against hand-made geometry, the A|B layout, the split, the atomic
install, the CLI's error lines, and the shipped edges2apples sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error
from gmdrit_cli.data.edges import edge_lines, edges_pair, make_edges_dataset
from gmdrit_cli.errors import DataError

PACKAGE = Path(__file__).resolve().parents[1] / "gmdrit_cli"


def near(mask: np.ndarray, distance: int) -> np.ndarray:
    """Pixels within Chebyshev ``distance`` of a True pixel of ``mask`` (a plain shifted OR, no library)."""
    h, w = mask.shape
    padded = np.pad(mask, distance)
    out = np.zeros_like(mask)
    for dy in range(-distance, distance + 1):
        for dx in range(-distance, distance + 1):
            out |= padded[distance + dy : distance + dy + h, distance + dx : distance + dx + w]
    return out


def no_2x2_block(mask: np.ndarray) -> bool:
    """True when no 2x2 square is all True: the lines are one pixel wide."""
    return not (mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:] & mask[1:, 1:]).any()


# -- edge maps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_square_with_a_grey_rim_gives_lines_exactly_on_the_rim(sigma):
    # A white square whose outermost ring (rows/cols 10 and 29) is mid-grey: the brightness step is
    # centred on that ring, so the strongest gradient, and the edge, is exactly there.
    image = np.zeros((40, 40))
    image[10:30, 10:30] = 0.5
    image[11:29, 11:29] = 1.0
    rim = image == 0.5
    edges = edge_lines(image, sigma)
    # away from the corners every row crosses the left and right rim once, every column the top and bottom
    for i in range(15, 25):
        assert np.flatnonzero(edges[i]).tolist() == [10, 29]
        assert np.flatnonzero(edges[:, i]).tolist() == [10, 29]
    assert rim[edges].mean() > 0.85  # corners may be cut diagonally by one pixel, nothing more
    assert not (edges & ~near(rim, 1)).any()
    assert no_2x2_block(edges)


def test_white_square_on_black_gives_one_pixel_lines_on_its_border():
    # The step lies between two pixels (9|10 and 29|30): the line may take either side, but exactly one.
    image = np.zeros((40, 40))
    image[10:30, 10:30] = 1.0
    edges = edge_lines(image, 1.0)
    for i in range(14, 26):
        row = np.flatnonzero(edges[i]).tolist()
        assert len(row) == 2 and row[0] in (9, 10) and row[1] in (29, 30)
        column = np.flatnonzero(edges[:, i]).tolist()
        assert len(column) == 2 and column[0] in (9, 10) and column[1] in (29, 30)
    border = np.zeros_like(edges)
    border[9:31, 9:31] = True
    border[11:29, 11:29] = False  # the 2-px band holding both sides of the step
    assert not (edges & ~near(border, 1)).any()
    assert no_2x2_block(edges)


def test_flat_and_faintly_noisy_images_have_no_edges():
    rng = np.random.default_rng(0)
    assert not edge_lines(np.full((32, 32), 0.4), 1.0).any()
    faint = 0.4 + rng.integers(-1, 2, (32, 32)) / 255.0  # one grey level of noise
    assert not edge_lines(faint, 1.0).any()


def test_pair_layout_edges_left_photo_right():
    # 80x50 photo, black left of x=40, white from x=40; fitted to 32: crop columns 15..65, then resize.
    photo = np.zeros((50, 80, 3), np.uint8)
    photo[:, 40:] = 255
    photo = Image.fromarray(photo)
    pair = edges_pair(photo, 32)
    assert pair.size == (64, 32) and pair.mode == "RGB"
    right = np.asarray(pair)[:, 32:].astype(int)
    expected = np.asarray(photo.crop((15, 0, 65, 50)).resize((32, 32), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(right - expected).max() <= 1
    left = np.asarray(pair)[:, :32]
    assert set(np.unique(left).tolist()) <= {0, 255}  # black lines on white, nothing in between
    assert (left[..., 0] == left[..., 1]).all() and (left[..., 1] == left[..., 2]).all()
    ink = left[..., 0] == 0
    for y in range(4, 28):  # the step from 25/50 of the crop lands between columns 15 and 16
        assert np.flatnonzero(ink[y]).tolist() in ([15], [16])
    assert ink.sum() < 34  # one vertical line, nothing else


# -- the dataset --------------------------------------------------------------------------------------


def square_photo(side: int, inset: int) -> Image.Image:
    arr = np.zeros((side, side, 3), np.uint8)
    arr[inset : side - inset, inset : side - inset] = 255
    return Image.fromarray(arr)


def photo_folder(folder: Path, count: int, side: int = 24, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        square_photo(side, 3 + i % 5).save(folder / f"p{i:02d}.png")
    return folder


def split_names(root: Path) -> dict[str, list[str]]:
    return {s: sorted(p.name for p in (root / s).iterdir()) for s in ("train", "val", "test")}


def test_folder_of_photos_is_split_by_fractions_and_seed(tmp_path):
    src = photo_folder(tmp_path / "photos", 20)
    calls = []
    result = make_edges_dataset(
        src,
        tmp_path / "a",
        size=16,
        val=0.1,
        test=0.2,
        seed=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result.counts == {"train": 14, "val": 2, "test": 4}  # 20 - 2 - 4
    assert calls == [(i, 20) for i in range(1, 21)]
    names = split_names(tmp_path / "a")
    assert sorted(sum(names.values(), [])) == [f"p{i:02d}.jpg" for i in range(20)]
    with Image.open(tmp_path / "a" / "train" / names["train"][0]) as im:
        assert im.size == (32, 16) and im.format == "JPEG"
    make_edges_dataset(src, tmp_path / "b", size=16, val=0.1, test=0.2, seed=3)
    make_edges_dataset(src, tmp_path / "c", size=16, val=0.1, test=0.2, seed=4)
    assert split_names(tmp_path / "b") == names
    assert split_names(tmp_path / "c") != names
    settings = json.loads((tmp_path / "a" / "edges.json").read_text())
    assert settings["counts"] == result.counts and settings["seed"] == 3 and settings["size"] == 16


def test_written_edges_trace_the_square_of_each_photo(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    square_photo(32, 8).save(src / "square.png")  # white rows/cols 8..23 on black
    make_edges_dataset(src, tmp_path / "out", size=32, val=0.0, test=0.0)
    with Image.open(tmp_path / "out" / "train" / "square.jpg") as im:
        pair = np.asarray(im.convert("L")).astype(int)
    ink = pair[:, :32] < 128
    for i in range(11, 21):  # each middle row/column: one dark pixel on each side of the step
        assert len(np.flatnonzero(ink[i])) == 2 and np.flatnonzero(ink[i])[0] in (7, 8)
        assert len(np.flatnonzero(ink[:, i])) == 2 and np.flatnonzero(ink[:, i])[1] in (23, 24)
    band = np.zeros_like(ink)
    band[7:25, 7:25] = True
    band[9:23, 9:23] = False
    assert not (ink & ~near(band, 1)).any()
    assert np.abs(pair[:, 32:][12:20, 12:20] - 255).max() < 8  # the photo half: white centre


def test_cyclegan_root_keeps_its_test_folders_and_names_repeated_stems(tmp_path):
    root = tmp_path / "a2o"
    photo_folder(root / "trainA", 5)
    photo_folder(root / "trainB", 5, start=4)  # p04 is in both train folders
    photo_folder(root / "testA", 2, start=20)
    photo_folder(root / "testB", 1, start=30)
    result = make_edges_dataset(root, tmp_path / "out", size=16, val=0.2)
    assert result.counts == {"train": 8, "val": 2, "test": 3}
    names = split_names(tmp_path / "out")
    assert names["test"] == ["p20.jpg", "p21.jpg", "p30.jpg"]
    assert sorted(names["train"] + names["val"]) == sorted(
        [
            "p00.jpg",
            "p01.jpg",
            "p02.jpg",
            "p03.jpg",
            "trainA_p04_png.jpg",
            "trainB_p04_png.jpg",
            "p05.jpg",
            "p06.jpg",
            "p07.jpg",
            "p08.jpg",
        ]
    )
    with pytest.raises(DataError, match="test folders"):
        make_edges_dataset(root, tmp_path / "other", size=16, test=0.1)


def test_refuses_a_non_empty_destination_and_overwrite_replaces_it(tmp_path):
    src = photo_folder(tmp_path / "photos", 4)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="--overwrite"):
        make_edges_dataset(src, dst, size=16)
    assert [p.name for p in dst.iterdir()] == ["mine.txt"]
    make_edges_dataset(src, dst, size=16, val=0.0, test=0.0, overwrite=True)
    assert sorted(p.name for p in dst.iterdir()) == ["edges.json", "test", "train", "val"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_edges_dataset(src, empty, size=16, val=0.0, test=0.0).counts["train"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "empty", "photos"]  # no temporary folders


def test_failure_midway_leaves_the_old_destination_and_no_half_dataset(tmp_path):
    src = photo_folder(tmp_path / "photos", 6)
    dst = tmp_path / "dst"
    make_edges_dataset(src, dst, size=16, val=0.0, test=0.0)
    before = split_names(dst)

    def crash(done, total):
        if done == 3:
            raise RuntimeError("disk pulled")

    with pytest.raises(RuntimeError):
        make_edges_dataset(src, dst, size=16, seed=1, overwrite=True, progress=crash)
    assert split_names(dst) == before
    with pytest.raises(RuntimeError):
        make_edges_dataset(src, tmp_path / "new", size=16, progress=crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "photos"]


def test_unreadable_images_are_skipped_and_none_readable_is_an_error(tmp_path):
    src = photo_folder(tmp_path / "photos", 3)
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    (src / "notes.txt").write_text("ignored: not an image name")
    result = make_edges_dataset(src, tmp_path / "out", size=16, val=0.0, test=0.0)
    assert result.counts["train"] == 3
    assert [(p.name, "cannot be read" in why) for p, why in result.skipped] == [("broken.jpg", True)]
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.jpg", "b.png"):
        (bad / name).write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="none of its images could be read"):
        make_edges_dataset(bad, tmp_path / "never", size=16)
    assert not (tmp_path / "never").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- the command line ---------------------------------------------------------------------------------


def test_cli_writes_the_dataset_and_says_where(cli, tmp_path):
    src = photo_folder(tmp_path / "photos", 10)
    proc = cli(
        "data", "edges", str(src), str(tmp_path / "out"), "--size", "16", "--val", "0.2", "--test", "0.1", "--seed", "1"
    )
    assert proc.returncode == 0, proc.stderr
    rows = {
        line.split()[0]: line.split()[1]
        for line in proc.stdout.splitlines()
        if line.split()[:1] in (["train"], ["val"], ["test"])
    }
    assert rows == {"train": "7", "val": "2", "test": "1"}
    assert str(tmp_path / "out") in proc.stdout and "32x16" in proc.stdout


def test_cli_errors_are_one_line(cli, tmp_path):
    assert_one_line_error(
        cli("data", "edges", str(tmp_path / "nowhere"), str(tmp_path / "out")), "does not exist", "nowhere"
    )
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("data", "edges", str(tmp_path / "empty"), str(tmp_path / "out")), "no images")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"garbage")
    assert_one_line_error(cli("data", "edges", str(bad), str(tmp_path / "out")), "could be read")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    src = photo_folder(tmp_path / "photos", 2)
    assert_one_line_error(cli("data", "edges", str(src), str(full)), "not empty", "--overwrite")
    assert_one_line_error(
        cli("data", "edges", str(src), str(tmp_path / "o"), "--val", "0.6", "--test", "0.5"), "no training"
    )


# -- the shipped sample -------------------------------------------------------------------------------


def test_shipped_edges2apples_sample_has_the_expected_layout():
    sample, photos = PACKAGE / "sample_data" / "edges2apples", PACKAGE / "sample_data" / "apple2orange"
    stems = {d: sorted(p.stem + ".jpg" for p in (photos / d).iterdir()) for d in ("trainA", "trainB", "testA", "testB")}
    names = split_names(sample)
    assert len(names["val"]) == 2
    assert sorted(names["train"] + names["val"]) == sorted(stems["trainA"] + stems["trainB"])
    assert names["test"] == sorted(stems["testA"] + stems["testB"])
    total = 0
    for split, files in names.items():
        for name in files:
            path = sample / split / name
            total += path.stat().st_size
            with Image.open(path) as im:
                assert im.size == (128, 64) and im.format == "JPEG"
                left = np.asarray(im.convert("RGB"))[:, :64].astype(int)
            assert np.abs(left - left[..., :1]).max() <= 2  # the edge half is grey: no colour bleeds across
            assert 0.0 < (left[..., 0] < 128).mean() < 0.3  # some black lines, mostly white
    assert total + (sample / "edges.json").stat().st_size < 1_000_000
    settings = json.loads((sample / "edges.json").read_text())
    assert settings["source"] == "sample:apple2orange" and settings["size"] == 64
