"""Training with several processes on the CPU (gloo): the same model as one process, stops, resumes, a lost
process, and the collectives themselves.

Processes are started either by ``torchrun`` itself or with the environment torchrun gives its workers
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which lets a test signal or kill one of them.
"""

import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from conftest import (
    GLOBAL_BATCH,
    assert_same_run,
    cfg_for,
    distributed_args,
    finish,
    launch,
    wait_for_iterations,
)
from gmdrit_cli.training.checkpoint import find_checkpoint
from gmdrit_cli.training.trainer import resume_run, train

pytestmark = pytest.mark.distributed


def metric_rows(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time")
    return rows


def checkpoint_tensors(run_dir, iteration):
    folder = run_dir / "checkpoints" / f"iter_{iteration:07d}"
    return {
        **load_file(str(folder / "model.safetensors")),
        **{f"optim.{k}": v for k, v in load_file(str(folder / "optim.safetensors")).items()},
    }


def within_float_noise(one, two, other, factor=10.0, floor=1e-5) -> bool:
    """``two`` is as close to ``one`` as float noise allows: at most ``factor`` times as far as ``other``, the
    same one-process run summing in another order (2 CPU threads instead of 1), plus ``floor`` of its scale."""
    scale = float(one.abs().max())
    return float((two - one).abs().max()) <= factor * float((other - one).abs().max()) + floor * scale + 1e-12


#: the families that train with several processes (paired and phased ones are refused with one line for now)
DISTRIBUTED_FAMILIES = ("gmdrit", "mdmm")


@pytest.mark.parametrize(
    "family,upsample", [(f, "transposed") for f in DISTRIBUTED_FAMILIES] + [("gmdrit", "resize_conv")]
)
def test_two_processes_under_torchrun_equal_one_process(family, upsample, tiny_data, tmp_path):
    """torchrun --nproc-per-node 2 at a global batch of 4 vs one process at batch 4: the same losses, weights,
    optimizer states and EMA copy within float tolerance, after each of 2 iterations; replicas checked.

    Float tolerance is measured, not guessed: the one-process run is repeated with 2 CPU threads, which
    only changes the order of float sums. Adam's first steps move a weight by about lr * sign(gradient)
    whatever the gradient's size, so a weight whose gradient is at rounding level can move by +lr in one
    run and -lr in the other, and poorly conditioned paths amplify rounding (that alone moves some GM-DRIT
    gradients by percents). So: losses and optimizer moments within 10 times the two-thread run's distance
    (plus 1e-4 of a loss, 1e-3 of a moment tensor's scale); every weight within 8 lr (two steps of each
    of two iterations flipping sign), and the mean weight distance within 3 times the two-thread run's."""
    iters = 2
    extra = (
        "train.ema_beta=0.5",
        "train.check_replicas_every=1",
        "train.save_every=1",
        "train.keep_last=5",
        f"model.upsample={upsample}",
    )
    train(cfg_for(family, tiny_data, iters, *GLOBAL_BATCH, *extra), tmp_path / "one")
    threads = torch.get_num_threads()
    try:
        train(cfg_for(family, tiny_data, iters, *GLOBAL_BATCH, *extra, "train.threads=2"), tmp_path / "other")
    finally:
        torch.set_num_threads(threads)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "gmdrit_cli",
            "train",
            "--run-dir",
            str(tmp_path / "two"),
            *distributed_args(family, tiny_data, iters, *extra),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 processes (gloo, global batch 4)" in done.stdout
    one, two, other = (metric_rows(tmp_path / r) for r in ("one", "two", "other"))
    assert [r["iter"] for r in two] == [1, 2] and one[0].keys() == two[0].keys()
    for a, b, c in zip(one, two, other):
        for key in a:
            assert abs(b[key] - a[key]) <= 10 * abs(c[key] - a[key]) + 1e-4 * abs(a[key]) + 1e-6, (a["iter"], key)
    lr = 1e-4
    for iteration in range(1, iters + 1):
        one, two, other = (checkpoint_tensors(tmp_path / r, iteration) for r in ("one", "two", "other"))
        assert one.keys() == two.keys() and any(k.startswith("ema.") for k in two)
        weights = [k for k in one if not k.startswith("optim.")]
        for k in one.keys() - set(weights):
            assert within_float_noise(one[k], two[k], other[k], floor=1e-3), (iteration, k)
        for k in weights:
            assert float((two[k] - one[k]).abs().max()) <= 8 * lr, (iteration, k)
        distance = {
            r: float(torch.cat([(run[k] - one[k]).abs().flatten() for k in weights]).mean())
            for r, run in (("two", two), ("other", other))
        }
        assert distance["two"] <= 3 * distance["other"] + 1e-8, (iteration, distance)


def test_sigterm_to_one_process_stops_both_and_resuming_is_bitwise(tiny_data, tmp_path):
    """SIGTERM reaches one process only: both stop after the same iteration, rank 0 saves; resumed with 2
    processes the run ends bitwise equal to an uninterrupted 2-process run. Resuming with 1 process says
    the run is no longer bitwise reproducible."""
    cut = tmp_path / "cut"
    procs = launch(tmp_path, ["train", "--run-dir", str(cut), *distributed_args("gmdrit", tiny_data, 100000)])
    wait_for_iterations(cut, 2, procs[0])
    procs[1].send_signal(signal.SIGTERM)
    ends = finish(procs)
    assert [code for code, _, _ in ends] == [128 + signal.SIGTERM] * 2, ends[0][2][-2000:] + ends[1][2][-2000:]
    assert "stopped (SIGTERM)" in ends[0][1] and ends[1][1] == ""  # only rank 0 talks
    folder, state = find_checkpoint(cut)
    stopped = state["iteration"]
    assert state["processes"] == 2 and stopped >= 2
    total = stopped + 2
    ends = finish(launch(tmp_path, ["resume", str(cut), "--set", f"train.max_iters={total}"]))
    assert [code for code, _, _ in ends] == [0, 0], ends[0][2][-2000:]
    ends = finish(
        launch(
            tmp_path, ["train", "--run-dir", str(tmp_path / "straight"), *distributed_args("gmdrit", tiny_data, total)]
        )
    )
    assert [code for code, _, _ in ends] == [0, 0], ends[0][2][-2000:]
    assert_same_run(tmp_path / "straight", cut)

    logger = logging.getLogger("gmdrit")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        run = resume_run(cut)
    finally:
        logger.removeHandler(handler)
    assert run.processes.world == 1 and run.iteration == total
    assert any("no longer bitwise" in r.getMessage() for r in records)


def test_a_killed_process_makes_the_other_exit_instead_of_hanging(tiny_data, tmp_path):
    run_dir = tmp_path / "r"
    procs = launch(
        tmp_path,
        ["train", "--run-dir", str(run_dir), *distributed_args("mdmm", tiny_data, 100000, "train.dist_timeout=30")],
    )
    wait_for_iterations(run_dir, 2, procs[0])
    procs[1].kill()
    code, out, err = finish(procs[:1], timeout=240)[0]  # far more than the collective timeout: a hang fails
    procs[1].wait()
    assert code == 1, err[-2000:]
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert "another process died or did not answer within 30 s" in lines[-1] and "Traceback" not in err
    assert not (run_dir / ".lock").exists()  # rank 0 released the run folder on its way out


# -- the collectives, on two spawned processes ------------------------------------------------------


def _collectives_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from gmdrit_cli.errors import TrainingError
    from gmdrit_cli.training import distributed

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    distributed.BUCKET_BYTES = 64  # a few elements per bucket: several buckets, split by dtype too
    processes = distributed.Processes(rank, world, 0, 60.0, "gloo")
    tensors = [
        torch.full((3, 2), float(rank + 1)),
        None,
        torch.arange(5, dtype=torch.float64) * (rank + 1),
        torch.full((40,), 2.0 * rank),
    ]
    averaged = processes.average(tensors)
    result = {
        "averaged": [None if t is None else t.tolist() for t in averaged],
        "shapes": [None if t is None else list(t.shape) for t in averaged],
        "dtypes": [None if t is None else str(t.dtype) for t in averaged],
        "agreed": processes.agree([rank, 1 - rank, 0]),
    }
    processes.check_identical({"same": torch.ones(4)}, 1)
    try:
        processes.check_identical({"same": torch.ones(4), "differs": torch.ones(4) * (rank + 1)}, 7)
        result["divergence"] = ""
    except TrainingError as exc:
        result["divergence"] = str(exc)
    with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def test_bucketed_average_agreement_and_replica_check(tmp_path):
    mp.spawn(_collectives_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"{rank}.json").read_text())
        # by hand: the means of (1, 2), of (1, 2) * arange(5), of (0, 2)
        assert r["averaged"] == [[[1.5, 1.5]] * 3, None, [0.0, 1.5, 3.0, 4.5, 6.0], [1.0] * 40]
        assert r["shapes"] == [[3, 2], None, [5], [40]]
        assert r["dtypes"] == ["torch.float32", None, "torch.float64", "torch.float32"]
        assert r["agreed"] == [1, 1, 0]
        assert "differ at iteration 7 (first: differs, 1 tensors" in r["divergence"]
