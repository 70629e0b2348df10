"""The background input pipeline gives exactly the batches of inline loading, in the same order, across a resume
and with several processes; and the local copy of a dataset on a slow mount (issue 26)."""

import json
import os

import pytest
import torch

from conftest import (
    assert_one_line_error,
    assert_same_run,
    cfg_for,
    data_for,
    distributed_args,
    finish,
    launch,
    make_paired_dataset,
    set_args,
    tiny_overrides,
)
from gmdrit_cli.data.cache import cache_dataset, tree_summary
from gmdrit_cli.data.paired import PairedImages
from gmdrit_cli.data.pipeline import BatchPipeline, Draw, auto_threads
from gmdrit_cli.data.unpaired import UnpairedImageFolders
from gmdrit_cli.errors import DataError
from gmdrit_cli.training.trainer import resume_run, train


def unpaired(root, seed=3):
    return UnpairedImageFolders(root, ["A", "B"], resize=36, crop=32, flip=True, seed=seed)


def paired(root, seed=3):
    return PairedImages(root, resize=36, crop=32, flip=True, seed=seed)


def same(a, b) -> bool:
    return (
        torch.equal(a.images, b.images)
        and torch.equal(a.domains, b.domains)
        and (a.targets is None) == (b.targets is None)
        and (a.targets is None or torch.equal(a.targets, b.targets))
    )


def inline(dataset, draws, iterations):
    return [[getattr(dataset, d.kind)(*d.args) for d in draws(i)] for i in iterations]


def sample_draws(batch_size, per_step=2):
    return lambda i: [Draw("sample", (batch_size,))] * per_step


def epoch_draws(batch_size, per_epoch):
    # a VAE phase over both domains: batch i % per_epoch of epoch i // per_epoch, the last one smaller
    return lambda i: [Draw("epoch_batch", ((0, 1), f"0:0:{i // per_epoch}", i % per_epoch, batch_size))]


def truncate(path):
    path.write_bytes(path.read_bytes()[:60])  # the header still reads, decoding fails


CASES = {
    "unpaired sample": (lambda root: unpaired(root), sample_draws(4)),
    "epoch batches": (lambda root: unpaired(root), epoch_draws(3, 3)),
    "paired sample": (lambda root: paired(root), sample_draws(2, 1)),
}


@pytest.fixture
def roots(tiny_data, tmp_path):
    return {"unpaired": tiny_data, "paired": make_paired_dataset(tmp_path / "pairs", per_split=5)}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("broken", [False, True])
def test_prefetched_batches_equal_inline_loading_and_checkpoint_the_batches_taken(case, broken, roots):
    """Planned ahead and loaded by 2 threads, 3 iterations ahead: the same batches as inline loading, bitwise. After
    each iteration the sampler state a checkpoint takes is inline loading's after the same iteration (not the
    state after the batches planned ahead), and a pipeline restarted from it goes on with the same batches. With
    a file that no longer decodes (a paired or epoch batch then shifts its draws) the pipeline falls back to
    inline loading for that batch and stays equal."""
    make, draws = CASES[case]
    root = roots["paired" if case.startswith("paired") else "unpaired"]
    if broken:
        truncate(sorted((root / ("train" if case.startswith("paired") else "trainA")).iterdir())[1])
    n = 12
    reference = make(root)
    states, expected = [], []
    for i in range(n):
        expected.append(inline(reference, draws, [i])[0])
        states.append(reference.state_dict())
    dataset = make(root)
    with BatchPipeline(dataset, draws, prefetch=3, threads=2) as pipeline:
        for i in range(n):
            got = pipeline.batches(i, n)
            assert len(got) == len(expected[i]) and all(same(a, b) for a, b in zip(got, expected[i])), i
            assert pipeline.sampler_state()["rng"] == states[i]["rng"], i  # the batches taken, not those planned
            if case.startswith("paired"):
                assert pipeline.sampler_state()["position"] == states[i]["position"]
    resumed = make(root)
    resumed.load_state_dict(states[4])
    with BatchPipeline(resumed, draws, prefetch=2, threads=2) as pipeline:
        for i in range(5, n):
            assert all(same(a, b) for a, b in zip(pipeline.batches(i, n), expected[i])), i


def test_closing_steps_the_dataset_back_to_the_batches_taken(tiny_data):
    reference, dataset = unpaired(tiny_data), unpaired(tiny_data)
    draws = sample_draws(2, 1)
    inline(reference, draws, range(3))
    pipeline = BatchPipeline(dataset, draws, prefetch=4, threads=2)
    for i in range(3):
        pipeline.batches(i, 100)
    assert dataset.state_dict()["rng"] != reference.state_dict()["rng"]  # planned ahead while it runs
    pipeline.close()
    assert dataset.state_dict() == reference.state_dict()
    assert same(dataset.sample(2), reference.sample(2))


def test_no_plan_past_the_end_and_a_jump_replans(tiny_data):
    dataset = unpaired(tiny_data)
    with BatchPipeline(dataset, sample_draws(2, 1), prefetch=5, threads=1) as pipeline:
        pipeline.batches(0, 2)
        pipeline.batches(1, 2)
        assert not pipeline._queue  # nothing planned for iteration 2, the end
        reference = unpaired(tiny_data)
        inline(reference, sample_draws(2, 1), range(2))
        assert dataset.state_dict()["rng"] == reference.state_dict()["rng"]
        pipeline.batches(7, 9)  # the loop jumped (never in training): plan from there, no error


@pytest.mark.parametrize("rank", [0, 1])
def test_two_processes_each_load_their_rows_of_the_planned_batch(tiny_data, rank):
    """With 2 processes every process plans the whole global batch of 4 and loads its own rows, as before."""
    one, mine = unpaired(tiny_data), unpaired(tiny_data)
    whole = [one.sample(4) for _ in range(6)]
    reference = unpaired(tiny_data)
    expected = [reference.sample(4, rank, 2) for _ in range(6)]
    rows = [rank, 2 + rank]  # shard.split_batch(4, rank, 2): one row of each half
    with BatchPipeline(mine, lambda i: [Draw("sample", (4, rank, 2))], prefetch=2, threads=2) as pipeline:
        for i in range(6):
            (got,) = pipeline.batches(i, 6)
            assert same(got, expected[i])
            assert torch.equal(got.images, whole[i].images[rows]) and torch.equal(got.domains, whole[i].domains[rows])


def test_a_load_error_is_raised_at_the_iteration_inline_loading_raises_it(tiny_data):
    for path in (tiny_data / "trainA").iterdir():
        truncate(path)  # domain A has no readable image left
    dataset = unpaired(tiny_data, seed=0)
    with BatchPipeline(dataset, sample_draws(4, 1), prefetch=2, threads=2) as pipeline:
        with pytest.raises(DataError, match="no readable images left"):
            pipeline.batches(0, 10)


def test_auto_threads_is_a_share_of_the_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert auto_threads(1) == max(1, min(4, cores))
    assert auto_threads(cores * 2) == 1


# -- the trainer: prefetching or not, the same run, bitwise -----------------------------------------


@pytest.mark.slow  # trains a run twice (straight, then stopped and resumed) and compares them bitwise
@pytest.mark.parametrize("family", ["gmdrit", "mdmm", "bicyclegan", "vae"])
def test_a_prefetching_run_stopped_and_resumed_equals_inline_loading_bitwise(family, tiny_data, tmp_path):
    """Inline loading (speed.prefetch=0, the loader before issue 26) straight through, against 3 iterations
    prefetched, a stop, and 3 more resumed with prefetching: the same weights, optimizer states and losses."""
    n = 6
    data = data_for(family, tiny_data, tmp_path)
    extra = ("train.batch_size=4",) if family == "vae" else ()  # several batches per VAE epoch
    train(cfg_for(family, data, n, "speed.prefetch=0", *extra), tmp_path / "inline")
    train(cfg_for(family, data, n // 2, "speed.prefetch=3", "speed.loader_threads=2", *extra), tmp_path / "ahead")
    run = resume_run(tmp_path / "ahead", [f"train.max_iters={n}"])
    assert run.fit().iterations == n
    assert_same_run(tmp_path / "inline", tmp_path / "ahead")


@pytest.mark.distributed
def test_two_processes_prefetching_equal_two_processes_loading_inline_bitwise(tiny_data, tmp_path):
    """torchrun-style, 2 processes at a global batch of 4: prefetching changes nothing, bitwise."""
    for name, prefetch in (("inline", 0), ("ahead", 3)):
        ends = finish(
            launch(
                tmp_path,
                [
                    "train",
                    "--run-dir",
                    str(tmp_path / name),
                    *distributed_args("gmdrit", tiny_data, 3, f"speed.prefetch={prefetch}", "train.save_every=3"),
                ],
            )
        )
        assert [code for code, _, _ in ends] == [0, 0], ends[0][2][-2000:] + ends[1][2][-2000:]
    assert_same_run(tmp_path / "inline", tmp_path / "ahead")


# -- a dataset on a slow mount, copied once ---------------------------------------------------------


def test_a_dataset_is_copied_once_and_reused_while_count_and_size_match(tiny_data, tmp_path):
    cache = tmp_path / "cache"
    first = cache_dataset(tiny_data, cache)
    assert first.copied and first.path == cache / tiny_data.name
    assert tree_summary(first.path) == tree_summary(tiny_data) == (first.files, first.size) == (16, first.size)
    marker = first.path / "trainA" / "0.png"
    stamp = marker.stat().st_mtime_ns
    os.utime(marker, ns=(stamp - 10**9, stamp - 10**9))  # a recopy would restore the source's time
    again = cache_dataset(tiny_data, cache)
    assert not again.copied and marker.stat().st_mtime_ns == stamp - 10**9
    # the source gains a file: copied again
    (tiny_data / "trainA" / "extra.png").write_bytes((tiny_data / "trainA" / "0.png").read_bytes())
    grown = cache_dataset(tiny_data, cache)
    assert grown.copied and grown.files == 17 and (grown.path / "trainA" / "extra.png").exists()
    # same count, other size (a file rewritten): copied again
    (tiny_data / "trainA" / "extra.png").write_bytes(b"x")
    assert cache_dataset(tiny_data, cache).copied
    # the copy lost a file (a cleaned-up disk): copied again
    (grown.path / "trainB" / "1.png").unlink()
    assert cache_dataset(tiny_data, cache).copied and (grown.path / "trainB" / "1.png").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no partial copy left behind


def test_cache_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        cache_dataset(tmp_path / "missing", tmp_path / "cache")
    (tmp_path / "data" / "trainA").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no files"):
        cache_dataset(tmp_path / "data", tmp_path / "cache")
    (tmp_path / "data" / "trainA" / "x.png").write_bytes(b"x")
    with pytest.raises(DataError, match="inside the data folder"):
        cache_dataset(tmp_path / "data", tmp_path / "data" / "cache")


def test_training_reads_the_local_copy_and_resumes_from_it(tiny_data, tmp_path):
    cache = tmp_path / "cache"
    cfg = cfg_for("gmdrit", tiny_data, 2, f"speed.data_cache={cache}")
    train(cfg, tmp_path / "run")
    copy = cache / tiny_data.name
    record = json.loads((tmp_path / "run" / "speed.json").read_text())
    assert record["data_root"] == str(copy)
    run = resume_run(tmp_path / "run", ["train.max_iters=3"])
    assert run.data_cache is not None and not run.data_cache.copied  # reused
    assert all(str(p).startswith(str(copy)) for files in run.dataset.candidates for p in files)
    assert run.fit().iterations == 3


def test_data_cache_command(cli, tiny_data, tmp_path):
    first = cli("data", "cache", tiny_data, "--to", tmp_path / "cache", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "copied 16 files" in first.stdout and f"speed.data_cache={tmp_path / 'cache'}" in first.stdout
    assert_one_line_error(cli("data", "cache", tmp_path / "nope", "--to", tmp_path / "cache"), "does not exist")


def test_train_prints_the_precision_choice_and_its_reason(cli, tiny_data, tmp_path):
    overrides = tiny_overrides(tiny_data, 1) + ["speed.amp=off"]
    done = cli("train", "--preset", "reduced_res", "--run-dir", tmp_path / "run", *set_args(overrides), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("training gmdrit") and "(fp32, speed.amp=off: speed.amp=off)" in first
