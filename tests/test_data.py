import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_dataset
from gmdrit_cli.data.unpaired import UnpairedImageFolders, domain_folders, open_rgb, resolve_root
from gmdrit_cli.errors import DataError


def folders(root, **kw):
    args = dict(resize=36, crop=32, flip=True, seed=0)
    args.update(kw)
    return UnpairedImageFolders(root, ["apple", "orange"], "train", **args)


def test_cyclegan_and_named_layouts(tmp_path):
    cyc = make_dataset(tmp_path / "cyc", per_domain=3)
    assert [p.name for p in domain_folders(cyc, ["apple", "orange"], "train")] == ["trainA", "trainB"]
    named = tmp_path / "named"
    for d in ("apple", "orange"):
        (named / "train" / d).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(named / "train" / d / "x.jpg")
    assert [p.name for p in domain_folders(named, ["apple", "orange"], "train")] == ["apple", "orange"]
    assert len(folders(named).files[1]) == 1


def test_batches_are_normalised_and_labelled(tiny_data):
    batch = folders(tiny_data).sample(6)
    assert batch.images.shape == (6, 3, 32, 32)
    assert batch.images.min() >= -1 and batch.images.max() <= 1
    assert batch.domains.dtype == torch.long and set(batch.domains.tolist()) <= {0, 1}
    # domain B images are brighter by construction: the label really follows the image
    means = batch.images.mean(dim=(1, 2, 3))
    for m, d in zip(means, batch.domains):
        assert (m > -0.1) == bool(d)


def test_sampler_state_restores_the_same_batches(tiny_data):
    a = folders(tiny_data, seed=3)
    a.sample(2)
    state = a.state_dict()
    expected = [a.sample(2) for _ in range(3)]
    b = folders(tiny_data, seed=99)
    b.load_state_dict(state)
    for e in expected:
        got = b.sample(2)
        assert torch.equal(got.images, e.images) and torch.equal(got.domains, e.domains)


def test_same_seed_same_batches_other_seed_differs(tiny_data):
    x = folders(tiny_data, seed=1).sample(4).images
    assert torch.equal(x, folders(tiny_data, seed=1).sample(4).images)
    assert not torch.equal(x, folders(tiny_data, seed=2).sample(4).images)


def test_unreadable_files_reported_once_and_skipped(tiny_data, caplog):
    (tiny_data / "trainA" / "broken.png").write_bytes(b"not an image at all")
    (tiny_data / "trainA" / "notes.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="gmdrit"):
        data = folders(tiny_data)
    assert [r.getMessage() for r in caplog.records].count(
        f"skipping unreadable image {tiny_data / 'trainA' / 'broken.png'}"
    ) == 1
    assert all(p.name != "broken.png" for p in data.files[0]) and len(data.files[0]) == 4


def test_truncated_file_dropped_at_decode_time(tiny_data, caplog):
    good = tiny_data / "trainA" / "0.png"
    Image.fromarray(np.zeros((300, 300, 3), np.uint8) + 50).save(tiny_data / "trainA" / "big.jpg")
    raw = (tiny_data / "trainA" / "big.jpg").read_bytes()
    (tiny_data / "trainA" / "big.jpg").write_bytes(raw[: len(raw) // 3])  # header fine, data cut
    data = folders(tiny_data)
    with caplog.at_level(logging.WARNING, logger="gmdrit"):
        for _ in range(40):
            data.sample(2)
    assert all(p.name != "big.jpg" for p in data.files[0])
    assert good in data.files[0]


def test_empty_and_missing_folders_are_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        folders(tmp_path / "nowhere")
    root = tmp_path / "empty"
    (root / "trainA").mkdir(parents=True)
    (root / "trainB").mkdir()
    (root / "trainA" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="domain 'apple' has no readable images"):
        folders(root)
    with pytest.raises(DataError, match="no train split"):
        folders(tmp_path)


def test_exif_rotation_and_modes(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    im = open_rgb(tmp_path / "rot.jpg")
    assert im.size == (10, 20) and im.mode == "RGB"
    top = np.asarray(im)[:10].mean()
    assert top > 200  # the white half is on top after rotating clockwise
    Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(tmp_path / "a.png")
    assert np.asarray(open_rgb(tmp_path / "a.png")).min() == 255  # transparent -> white
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert np.asarray(open_rgb(tmp_path / "g16.png")).min() == 255
    Image.new("L", (4, 4), 7).save(tmp_path / "g.png")
    assert open_rgb(tmp_path / "g.png").getpixel((0, 0)) == (7, 7, 7)


def test_embedded_sample_ships_with_the_package():
    root = resolve_root("sample:apple2orange")
    data = UnpairedImageFolders("sample:apple2orange", ["apple", "orange"], "train", resize=72, crop=64, flip=True)
    assert min(len(f) for f in data.files) >= 24
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 3 * 2**20
    assert data.fixed_examples().images.shape == (2, 3, 64, 64)
