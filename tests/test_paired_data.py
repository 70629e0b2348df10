"""Paired data (BicycleGAN): both layouts, direction, 1-channel inputs, the shared crop and flip, the sampler,
and the errors for odd batches, lonely files and images that cannot be split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_paired_dataset
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.data.paired import PairedImages, eval_split
from gmdrit_cli.errors import ConfigError, DataError


def pairs(root, **kw):
    args = dict(resize=36, crop=32, flip=True, seed=0)
    args.update(kw)
    return PairedImages(root, "train", **args)


@pytest.mark.parametrize("layout", ["aligned", "folders"])
def test_the_same_crop_and_flip_reach_both_halves(tmp_path, layout):
    root = make_paired_dataset(tmp_path / "d", layout=layout)
    ds = pairs(root)
    assert ds.layout == layout and len(ds) == 4
    flipped = set()
    for _ in range(6):
        batch = ds.sample(2)
        assert batch.images.shape == (2, 3, 32, 32) and batch.targets.shape == (2, 3, 32, 32)
        # B = 255 - A on disk; bicubic resize is linear with weights summing to one, so after the same resize,
        # crop and flip A + B stays 255 up to one rounding step per side (in [-1, 1]: |A + B| <= 2/127.5)
        assert (batch.images + batch.targets).abs().max() <= 2 / 127.5 + 1e-6
        assert batch.domains.tolist() == [0, 0]
        for a in batch.images:  # which window and flip: compare with a hand-made resize of every pair
            matched = set()
            for i in range(len(ds)):
                src = Image.open(ds.files[i][0]).convert("RGB")
                half = src.crop((0, 0, 40, 40)) if layout == "aligned" else src
                big = torch.from_numpy(np.asarray(half.resize((36, 36), Image.BICUBIC)).copy()).permute(2, 0, 1)
                big = big.float() / 127.5 - 1
                for flip in (False, True):
                    ref = big.flip(-1) if flip else big
                    hits = [
                        (t, left)
                        for t in range(5)
                        for left in range(5)
                        if torch.allclose(ref[:, t : t + 32, left : left + 32], a, atol=1e-6)
                    ]
                    if hits:
                        matched.add(flip)
            assert len(matched) == 1  # exactly one window of one pair, flipped or not
            flipped |= matched
    assert flipped == {False, True}  # both flip decisions occurred, and every crop matched a real window


def test_direction_swaps_input_and_output(tmp_path):
    root = tmp_path / "d"
    (root / "train").mkdir(parents=True)
    Image.fromarray(np.concatenate([np.full((8, 8, 3), 10, np.uint8), np.full((8, 8, 3), 200, np.uint8)], axis=1)).save(
        root / "train" / "0.png"
    )
    ab = pairs(root, resize=8, crop=8, flip=False).fixed_examples(1)
    ba = pairs(root, resize=8, crop=8, flip=False, direction="BtoA").fixed_examples(1)
    assert torch.allclose(ab.images, torch.full_like(ab.images, 10 / 127.5 - 1))
    assert torch.allclose(ab.targets, torch.full_like(ab.targets, 200 / 127.5 - 1))
    assert torch.equal(ba.images, ab.targets) and torch.equal(ba.targets, ab.images)


def test_one_channel_inputs_are_pillows_grayscale_on_three_equal_channels(tmp_path):
    root = make_paired_dataset(tmp_path / "d")
    batch = pairs(root, resize=40, crop=40, flip=False, input_channels=1).fixed_examples(1)
    x = batch.images[0]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    left = Image.open(root / "train" / "0.png").crop((0, 0, 40, 40))
    gray = np.asarray(left.convert("L"), dtype=np.float32) / 127.5 - 1
    assert torch.allclose(x[0], torch.from_numpy(gray), atol=1e-6)
    assert not torch.equal(batch.targets[0][0], batch.targets[0][1])  # the output side stays in colour


def test_an_epoch_visits_each_pair_once_and_drops_the_partial_batch(tmp_path):
    root = make_paired_dataset(tmp_path / "d", per_split=5, splits=("train",))
    ds = pairs(root, resize=40, crop=40, flip=False)
    first = [ds.sample(2) for _ in range(2)]  # 4 of the 5 pairs: the fifth would make a batch of one
    seen = torch.cat([b.images for b in first])
    assert len({tuple(x.flatten()[:20].tolist()) for x in seen}) == 4
    assert ds.position == 4
    ds.sample(2)
    assert ds.position == 2  # a new epoch started instead of a batch of one


def test_sampler_state_restores_the_same_batches(tmp_path):
    root = make_paired_dataset(tmp_path / "d", per_split=5)
    a = pairs(root, seed=3)
    a.sample(2)
    state = a.state_dict()
    expected = [a.sample(2) for _ in range(4)]
    b = pairs(root, seed=99)
    b.load_state_dict(state)
    for e in expected:
        got = b.sample(2)
        assert torch.equal(got.images, e.images) and torch.equal(got.targets, e.targets)


def test_odd_batch_size_is_a_clear_error(tmp_path):
    root = make_paired_dataset(tmp_path / "d")
    with pytest.raises(DataError, match="odd"):
        pairs(root).sample(3)
    with pytest.raises(ConfigError, match="must be even"):
        load_config("quickstart", ["model.family=bicyclegan", "train.batch_size=3"])


def test_a_file_without_its_pair_is_named(tmp_path):
    root = make_paired_dataset(tmp_path / "d", layout="folders")
    Image.new("RGB", (8, 8)).save(root / "trainA" / "lonely.jpg")
    with pytest.raises(DataError, match="lonely.jpg"):
        pairs(root)


def test_an_image_too_narrow_to_split_is_named(tmp_path):
    root = make_paired_dataset(tmp_path / "d")
    Image.new("RGB", (1, 8)).save(root / "train" / "thin.png")
    with pytest.raises(DataError, match="thin.png.*cannot be split"):
        pairs(root)


def test_missing_layout_and_eval_split(tmp_path):
    with pytest.raises(DataError, match="neither"):
        pairs(make_paired_dataset(tmp_path / "d", splits=("val",)))
    assert eval_split(make_paired_dataset(tmp_path / "e", splits=("train", "test"))) == "test"
    assert eval_split(make_paired_dataset(tmp_path / "f")) == "val"


def test_a_missing_paired_folder_is_named_at_test_time(tmp_path):
    with pytest.raises(DataError, match="does not exist .*pass --data"):
        eval_split(tmp_path / "nowhere")
