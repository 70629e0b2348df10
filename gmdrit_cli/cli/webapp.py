"""``gmdrit app``: serve the web page of :mod:`gmdrit_cli.inference.webapp` (the optional extra ``app``)."""

from typing import Annotated

import typer

from ..errors import GmdritError
from .app import app, console
from .infer import CheckpointOption, RunOption, ThreadsOption

INSTALL_HINT = "gmdrit app needs Gradio: pip install 'gmdrit[app]'"


@app.command("app")
def app_command(
    run: RunOption = None,
    checkpoint: CheckpointOption = None,
    host: Annotated[
        str, typer.Option("--host", help="address to serve on (127.0.0.1: this machine only)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to serve on")] = 7860,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx", help="run an ONNX export (--checkpoint FOLDER or model.onnx) on onnxruntime instead of torch"
        ),
    ] = False,
    threads: ThreadsOption = 0,
) -> None:
    """A web page to try a model in the browser: upload, target domain, samples, seed, references, downloads."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise GmdritError(INSTALL_HINT)
    from ..limits import MAX_THREADS, bounded

    bounded(port, "--port", 1, 65535, "TCP ports are 16-bit")
    bounded(threads, "--threads", 0, MAX_THREADS, "more threads than cores only slow the model down")
    if run is not None and checkpoint is not None:
        raise GmdritError("give either --run or --checkpoint, not both")
    from ..inference.webapp import check_address, load_app_model, serve

    check_address(host, port)  # a bad --host or a busy --port is refused before anything is said
    model = load_app_model(run if run is not None else checkpoint, onnx=onnx, threads=threads)
    console.print(
        f"serving {model.description} on http://{host}:{port}/ (Ctrl+C stops it)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    serve(model, host, port, block=True)
