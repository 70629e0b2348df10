"""Shared fixtures and helpers: tiny on-disk datasets, overrides that make any preset tiny and fast, the two ways
to run `gmdrit` (in this process, or in a new one), and the helpers several test files share (runs compared
tensor by tensor, trainings in other processes, the archives of the download tests).

Tests import what they need from here (``from conftest import ...``), never from each other."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
APPLE2ORANGE = SHARED / "datasets" / "apple2orange"


# -- torch's thread count ------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """torch computes on one thread in this process, as in the processes ``run_gmdrit`` starts
    (OMP_NUM_THREADS=1): the tiny models of the tests gain nothing from more, and the runs stay comparable."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _keep_torch_threads(_one_torch_thread):
    """Put torch's thread count back after each test: training (``train.threads``) and the ``--threads`` option
    set it for the whole process, which would slow down (or speed up) every later test."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# -- datasets and tiny configs -------------------------------------------------------------------------


def make_dataset(root: Path, per_domain: int = 4, size: int = 40, splits=("train", "test")) -> Path:
    """CycleGAN layout with random images; domain B is brighter than domain A."""
    rng = np.random.default_rng(0)
    for split in splits:
        for d, letter in enumerate("AB"):
            folder = root / f"{split}{letter}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_domain):
                arr = rng.integers(0, 128, (size, size, 3)) + 100 * d
                Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def make_paired_dataset(
    root: Path, per_split: int = 4, size: int = 40, layout: str = "aligned", splits=("train", "val", "test")
) -> Path:
    """A paired dataset of random images: B is the photographic negative of A (B = 255 - A), so that any
    geometric transform applied identically to both keeps A + B = 255. ``aligned``: A|B side by side in
    ``<split>/i.png``; ``folders``: ``<split>A/i.png`` and ``<split>B/i.png``."""
    rng = np.random.default_rng(1)
    for split in splits:
        for i in range(per_split):
            a = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
            b = 255 - a
            if layout == "aligned":
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i}.png")
            else:
                for letter, arr in (("A", a), ("B", b)):
                    (root / f"{split}{letter}").mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(root / f"{split}{letter}" / f"{i}.png")
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


#: a 2-iteration BicycleGAN (bicyclegan_quickstart at 32 px, width 8) on make_paired_dataset's edges -> photos pairs
TINY_BICYCLEGAN = [
    "data.resize=32",
    "data.crop=32",
    "model.width=8",
    "bicyclegan.d_layers=2",
    "train.max_iters=2",
    "train.device=cpu",
    "train.threads=1",
    "train.sample_every=1000",
    "train.save_every=1000",
    "data.domains=[edges,photos]",
]


def tiny_overrides(root: Path, iters: int = 2) -> list[str]:
    """Overrides that shrink any preset to a model that trains in a fraction of a second per step."""
    return [
        f"data.root={root}",
        "data.resize=36",
        "data.crop=32",
        "model.width=8",
        "model.nz=8",
        f"train.max_iters={iters}",
        "train.device=cpu",
        "train.threads=1",
        "train.log_every=1",
        "train.sample_every=1000",
        "train.save_every=1000",
    ]


#: the preset each family's tiny runs start from
PRESET_OF_FAMILY = {
    "mdmm": "mdmm_baseline",
    "gmdrit": "reduced_res",
    "bicyclegan": "bicyclegan_quickstart",
    "vae": "vae_apple2orange",
}


def cfg_for(family: str, root, iters: int, *extra: str):
    """The config of a tiny ``family`` run of ``iters`` iterations on ``root``: its preset, ``tiny_overrides``,
    the family's own ``tiny_overrides``, then ``extra``."""
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.families import MODEL_FAMILIES

    return load_config(
        PRESET_OF_FAMILY[family],
        tiny_overrides(root, iters) + list(MODEL_FAMILIES[family].tiny_overrides) + list(extra),
    )


def data_for(family: str, tiny_data: Path, tmp_path: Path) -> Path:
    """The tiny unpaired dataset, or a tiny paired one for a family trained on pairs."""
    import torch

    from gmdrit_cli.families import build_model

    paired = build_model(cfg_for(family, tiny_data, 1), torch.device("cpu")).capabilities.paired_data
    return make_paired_dataset(tmp_path / "pairs") if paired else tiny_data


def family_overrides(family: str, root, iters: int = 2) -> list[str]:
    """Overrides that make the ``quickstart`` preset a tiny ``family`` model on the apple and orange domains."""
    from gmdrit_cli.families import MODEL_FAMILIES

    return (
        tiny_overrides(root, iters)
        + [f"model.family={family}", "data.domains=[apple,orange]"]
        + list(MODEL_FAMILIES[family].tiny_overrides)
    )


def family_trains_on_pairs(family: str) -> bool:
    """Whether ``family`` trains on paired data (its capabilities say ``paired_data``)."""
    import torch

    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.families import build_model

    cfg = load_config("quickstart", family_overrides(family, "unused"))
    return build_model(cfg, torch.device("cpu")).capabilities.paired_data


def on_meta(build):
    """``build()`` with every tensor it creates on torch's meta device: full-size networks for their parameter
    counts and shapes, without allocating or initialising a single weight."""
    import torch

    with torch.device("meta"):
        return build()


def build_on_meta(cfg):
    """The model family of ``cfg`` built on the meta device (see ``on_meta``)."""
    import torch

    from gmdrit_cli.families import build_model

    return on_meta(lambda: build_model(cfg, torch.device("meta")))


def input_image(root: Path) -> Path:
    """An image of the input domain: testA/0.png (unpaired) or the A|B file test/0.png (paired)."""
    return root / "testA" / "0.png" if (root / "testA").is_dir() else root / "test" / "0.png"


@pytest.fixture(scope="session")
def tiny_gmdrit_run(tmp_path_factory):
    """A 2-iteration GM-DRIT run (crop 32, width 8, nz 8) on 4 + 4 random images per split: (base, data root);
    the run folder is ``base / "run"``. Shared by the eval tests; they only read it."""
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.training.trainer import train

    base = tmp_path_factory.mktemp("eval")
    root = make_dataset(base / "data")
    train(load_config("reduced_res", tiny_overrides(root, 2)), base / "run")
    return base, root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 2-iteration MDMM run (crop 32, domains apple and orange) that a module's tests only read (or copy)."""
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.training.trainer import train

    base = tmp_path_factory.mktemp("mdmm_run")
    root = make_dataset(base / "data")
    train(load_config("mdmm_baseline", tiny_overrides(root, 2) + ["data.domains=[apple,orange]"]), base / "run")
    return base / "run"


# -- running `gmdrit` ----------------------------------------------------------------------------------


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error through the CLI: exit 1, no traceback, one stderr line starting 'error: ' holding every fragment."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def set_args(values: list[str]) -> list[str]:
    """``--set`` flags for a list of ``section.key=value`` overrides."""
    return [a for v in values for a in ("--set", v)]


def run_gmdrit(*args, cwd=None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`gmdrit ARGS` in a new process (one torch thread): for what needs a real process (signals, start-up, exit
    codes set by the interpreter, torchrun, environment variables read at import); else use the ``cli`` fixture."""
    return subprocess.run(
        _command(args), capture_output=True, text=True, cwd=cwd, env=_process_env(env), timeout=timeout
    )


def start_gmdrit(*args, cwd=None, env: dict | None = None) -> subprocess.Popen:
    """`gmdrit ARGS` started in a new process (one torch thread) and left running, stdout and stderr piped as text:
    for a test that signals, kills or races it."""
    return subprocess.Popen(
        _command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=_process_env(env)
    )


def _command(args) -> list[str]:
    return [sys.executable, "-m", "gmdrit_cli", *map(str, args)]


def _process_env(env: dict | None) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}


def run_cli(*args, cwd=None, env: dict[str, Optional[str]] | None = None) -> subprocess.CompletedProcess:
    """`gmdrit ARGS` in this process (no interpreter start nor torch import to pay), as a CompletedProcess (exit
    code, stdout, stderr).

    ``cwd`` runs it from another folder; ``env`` sets environment variables for the call (None removes one).
    What a command changes for the whole process is put back afterwards: the working folder, those variables,
    ``sys.argv``, the SIGTERM, SIGHUP and SIGINT handlers, the root logger's handlers and level, torch's thread count
    (``--threads``, ``train.threads``) and the global random generators (torch's, ``random``'s, numpy's).
    Tests take the ``cli`` fixture; this function is for module-scoped fixtures, which cannot take a
    function-scoped one."""
    import torch

    from gmdrit_cli.cli.main import _run_app

    argv = ["gmdrit", *map(str, args)]
    saved_argv, saved_cwd, threads = sys.argv, os.getcwd(), torch.get_num_threads()
    saved_random = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    root = logging.getLogger()
    saved_logging = (root.handlers[:], root.level)
    out, err = io.StringIO(), io.StringIO()
    try:
        _set_env(env or {})
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _run_app()
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        _set_env(saved_env)
        for s, h in handlers.items():
            signal.signal(s, h)
        root.handlers[:] = saved_logging[0]
        root.setLevel(saved_logging[1])  # setLevel, not .level: it clears the loggers' cached levels
        torch.set_num_threads(threads)
        torch.set_rng_state(saved_random[0])
        random.setstate(saved_random[1])
        np.random.set_state(saved_random[2])
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _set_env(values: dict[str, Optional[str]]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def modules_after_cli(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`gmdrit ARGS` in a fresh Python process: (the process, the modules it had loaded when the command ended),
    for the start-up checks of the torch-free paths."""
    code = (
        "import sys\n"
        "from gmdrit_cli.cli.main import _run_app\n"
        f"sys.argv = ['gmdrit', *{list(args)!r}]\n"
        "code = _run_app()\n"
        "print(' '.join(m for m in sys.modules if sys.modules[m] is not None))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    loaded = set(proc.stdout.splitlines()[-1].split()) if proc.stdout.strip() else set()
    return proc, loaded


@pytest.fixture
def cli():
    """``cli(*args, cwd=None, env=None)``: `gmdrit ARGS` in this process (see ``run_cli``), as a CompletedProcess
    (exit code, stdout, stderr)."""
    return run_cli


# -- trainings in other processes ----------------------------------------------------------------------


def wait_for_iterations(run_dir, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the training ``proc`` writing ``run_dir`` has logged ``count`` iterations (it must not end)."""
    deadline = time.time() + timeout
    metrics = Path(run_dir) / "metrics.jsonl"
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not start in time")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago: for a server to listen on, or one nothing answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: one process's global batch of 4 is two rows per process with two processes
GLOBAL_BATCH = ["train.batch_size=4", "speed.amp=off"]


def distributed_args(family: str, root, iters: int, *extra: str) -> list[str]:
    """``--preset`` and ``--set`` flags of a tiny ``family`` training at the global batch of ``GLOBAL_BATCH``."""
    return ["--preset", PRESET_OF_FAMILY[family], *set_args(tiny_overrides(root, iters) + GLOBAL_BATCH + list(extra))]


def launch(cwd, args, world: int = 2) -> list[subprocess.Popen]:
    """``world`` processes of ``gmdrit_cli ARGS`` with the environment torchrun gives its workers."""
    port = str(free_port())
    ranks = [
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        for rank in range(world)
    ]
    return [start_gmdrit(*args, cwd=cwd, env=env) for env in ranks]


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process once it ended."""
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, *out) for p, out in zip(procs, outputs)]


# -- comparing runs ------------------------------------------------------------------------------------


def metrics_without_time(run_dir) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` without their wall-clock time."""
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("time")
    return rows


def final_tensors(run_dir):
    """(weights, optimizer states, folder) of the run's newest checkpoint."""
    from safetensors.torch import load_file

    from gmdrit_cli.training.checkpoint import find_checkpoint

    folder, _ = find_checkpoint(run_dir)
    return load_file(str(folder / "model.safetensors")), load_file(str(folder / "optim.safetensors")), folder


def assert_same_run(a, b) -> None:
    """Runs ``a`` and ``b`` ended at the same iteration with bitwise equal weights and optimizer states and
    the same logged losses."""
    import torch

    (wa, oa, fa), (wb, ob, fb) = final_tensors(a), final_tensors(b)
    assert fa.name == fb.name
    assert wa.keys() == wb.keys() and oa.keys() == ob.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k
    assert metrics_without_time(a) == metrics_without_time(b)


# -- archives for the download tests -------------------------------------------------------------------

UNPAIRED_LAYOUT = {"trainA": 3, "trainB": 2, "testA": 1, "testB": 1}


def png(shade: int) -> bytes:
    """A 4 x 4 PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, 255 - shade, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def archive_files(layout: dict[str, int], top: Optional[str]) -> dict[str, bytes]:
    """Archive member name -> bytes: ``count`` tiny PNGs per folder, under ``top/`` when given."""
    prefix = f"{top}/" if top else ""
    return {f"{prefix}{folder}/{i}.png": png(10 * i + len(folder)) for folder, n in layout.items() for i in range(n)}


def make_zip(files: dict[str, bytes], top: Optional[str] = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # stored, so corrupted bytes fail the CRC check
        if top:
            archive.writestr(f"{top}/", b"")
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tiny_translation_step(root: Path, overrides: list[str]):
    """A tiny reduced_res GM-DRIT model with ``overrides`` (``key=value``) and one forward pass of a fixed random
    batch: (model, images 2 x 3 x 32 x 32, domain code, translation)."""
    import torch

    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.families import build_model

    model = build_model(load_config("reduced_res", tiny_overrides(root, 2) + overrides), torch.device("cpu"))
    torch.manual_seed(0)
    images, code = torch.rand(2, 3, 32, 32) * 2 - 1, torch.eye(2)
    return model, images, code, model.forward_pass(images, code)


def random_term_step(root: Path, key: str, weight: float):
    """:func:`tiny_translation_step` with ``loss.<key>=weight``, then its generator-alone terms, each
    random-attribute translation's input (B's content into A first) and those translations:
    (model, images, code, translation, terms, sources, fakes)."""
    import torch

    model, images, code, t = tiny_translation_step(root, [f"loss.{key}={weight}"])
    terms = model.generator_alone_terms(images, code, t)
    h = images.shape[0] // 2
    sources = torch.cat([images[h:], images[:h]])
    fakes = [f for f in (t.fake_random, t.fake_random2) if f is not None]
    return model, images, code, t, terms, sources, fakes
