"""One-off: move the flat package into subpackages and rewrite every import and dotted name that points at a
moved module (package code, tests, pyproject, docs). Idempotent on a tree that is already moved (nothing to
do). Run from the repository root: `python tools/relayout.py`; then `make test`.

Rules: ``MOVES`` maps old dotted modules (relative to ``gmdrit_cli``) to new ones; a moved package maps its
submodules by prefix. Relative imports are recomputed from each file's new place; absolute
``gmdrit_cli.<module>`` names (imports, monkeypatch strings, ``python -m``) are mapped by longest prefix.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "gmdrit_cli"

MOVES = {
    "cli": "cli.main", "cli_app": "cli.app", "cli_bench": "cli.bench", "cli_data": "cli.data",
    "cli_eval": "cli.eval", "cli_infer": "cli.infer", "cli_mixture": "cli.mixture", "cli_report": "cli.report",
    "cli_web": "cli.web", "cli_onnx": "cli.onnx", "cli_webapp": "cli.webapp",
    "config": "config.schema",
    "data": "data.unpaired", "paired_data": "data.paired", "pipeline": "data.pipeline", "data_cache": "data.cache",
    "download": "data.download", "edges": "data.edges",
    "trainer": "training.trainer", "engine": "training.engine", "checkpoint": "training.checkpoint",
    "distributed": "training.distributed", "shard": "training.shard", "runlock": "training.runlock",
    "speed": "training.speed", "tb_log": "training.tb_log", "benchmark": "training.benchmark",
    "inference": "inference.translate", "model_files": "inference.model_files", "quantize": "inference.quantize",
    "onnx_export": "inference.onnx_export", "onnx_runtime": "inference.onnx_runtime", "onnx_translate": "inference.onnx_translate",
    "translate_io": "inference.images", "image_io": "inference.images", "webapp": "inference.webapp",
    "evaluate": "evaluation.evaluate", "temperature_sweep": "evaluation.temperature_sweep",
    "metrics": "evaluation.metrics",
    "report": "reporting.report", "report_html": "reporting.html", "report_charts": "reporting.charts",
    "run_metrics": "reporting.run_metrics",
    "models": "families", "models.base": "families.base", "models.registry": "families.registry",
    "models.template": "families.template", "models.drit": "families.drit", "losses": "families.drit_losses",
    "nets.blocks": "families.blocks",
    "models.mdmm": "families.mdmm.model", "nets.mdmm": "families.mdmm.nets",
    "models.gmdrit": "families.gmdrit.model", "nets.gmdrit": "families.gmdrit.nets",
    "losses_mixture": "families.gmdrit.losses", "mixture_report": "families.gmdrit.mixture_report",
    "models.bicyclegan": "families.bicyclegan.model", "nets.bicyclegan": "families.bicyclegan.nets",
    "losses_bicyclegan": "families.bicyclegan.losses",
    "models.vae": "families.vae.model", "nets.vae": "families.vae.nets", "losses_vae": "families.vae.losses",
}
PACKAGES = {"metrics"}  # moved as a whole: submodules keep their names under the new package
NEW_PACKAGES = ["cli", "config", "data", "training", "inference", "evaluation", "reporting", "families",
                "families/mdmm", "families/gmdrit", "families/bicyclegan", "families/vae"]
INIT_DOC = {
    "cli": "The command line: only this package imports typer and rich; each command parses, calls one core function, renders.",
    "config": "The one config tree of dataclasses, presets in YAML, --set overrides.",
    "data": "Datasets: unpaired and paired folders, the background batch pipeline, downloads, edge maps, the local cache.",
    "training": "The fit() loop, the engine (optimizers, precision, EMA, gradient reduction), checkpoints, torchrun, the benchmark.",
    "inference": "Trained models at test time: finding and loading them, translate and interpolate, export.",
    "evaluation": "`gmdrit eval`: the offline protocol, its metric registry, the temperature sweep.",
    "reporting": "`gmdrit report`: run folders read back, the HTML page and its charts.",
    "families": "Model families: one folder each, registered on import; the contract in base.py.",
}


def old_modules() -> dict[str, Path]:
    """Old dotted module name (gmdrit_cli.x) -> file, for every module that MOVES names and exists."""
    found = {}
    for old in MOVES:
        parts = old.split(".")
        as_file, as_pkg = ROOT / PKG / Path(*parts).with_suffix(".py"), ROOT / PKG / Path(*parts) / "__init__.py"
        if as_file.exists():
            found[f"{PKG}.{old}"] = as_file
        elif as_pkg.exists():
            found[f"{PKG}.{old}"] = as_pkg
    return found


def map_name(full: str) -> str:
    """gmdrit_cli.old.x.y -> gmdrit_cli.new.x.y by the longest old-module prefix (names inside a module kept)."""
    if not full.startswith(PKG + "."):
        return full
    rest = full[len(PKG) + 1:].split(".")
    for n in range(len(rest), 0, -1):
        old = ".".join(rest[:n])
        if old in MOVES:
            return ".".join([PKG, MOVES[old], *rest[n:]])
    return full


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def relative(from_package: str, target: str) -> str:
    """The relative module spec (dots + rest) that names ``target`` from inside ``from_package``."""
    a, b = from_package.split("."), target.split(".")
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return "." * (len(a) - common + 1) + ".".join(b[common:])


FROM_REL = re.compile(r"^(\s*)from (\.+)([\w.]*) import (.+)$")


def rewrite_relative(text: str, old_pkg: str, new_pkg: str, modules: set[str]) -> str:
    out = []
    for line in text.split("\n"):
        m = FROM_REL.match(line)
        if not m:
            out.append(line)
            continue
        indent, dots, mod, names = m.groups()
        base = old_pkg.split(".")
        base = base[:len(base) - (len(dots) - 1)]
        full = ".".join(base + ([mod] if mod else []))
        if mod:
            out.append(f"{indent}from {relative(new_pkg, map_name(full))} import {names}")
            continue
        # from . import a, b: each name may be a module that moved
        plain = names.strip()
        if plain.startswith("("):
            out.append(line)
            continue
        comment = ""
        if "#" in plain:
            plain, comment = plain.split("#", 1)
            comment = "  #" + comment
        lines = []
        for item in [x.strip() for x in plain.split(",") if x.strip()]:
            name, _, alias = item.partition(" as ")
            target = f"{full}.{name}"
            if target in modules:
                new = map_name(target)
                parent, leaf = new.rsplit(".", 1)
                bound = alias or name
                lines.append(f"{indent}from {relative(new_pkg, parent)} import {leaf}"
                             + (f" as {bound}" if bound != leaf else "") + comment)
            else:
                lines.append(f"{indent}from {relative(new_pkg, map_name(full) if full != PKG else PKG)} import {item}"
                             + comment)
        out.extend(lines)
    return "\n".join(out)


ABS = re.compile(r"\bgmdrit_cli(?:\.\w+)+")


def rewrite_absolute(text: str) -> str:
    return ABS.sub(lambda m: map_name(m.group(0)), text)


MAPPED = "\x00MAPPED\x00"  # stands for "gmdrit_cli" in names already mapped, which rewrite_absolute must skip
FROM_PKG = re.compile(r"^(\s*)from (gmdrit_cli(?:\.\w+)*) import (.+)$", re.M)


def rewrite_from_package(text: str, modules: set[str]) -> str:
    """from gmdrit_cli[.pkg] import a, b where a, b are modules that moved -> one import per module."""
    def fix(m):
        indent, package, names = m.groups()
        if names.strip().startswith("("):
            return m.group(0)
        items = [x.strip() for x in names.split("#")[0].split(",") if x.strip()]
        if not any(f"{package}.{i.partition(' as ')[0]}" in modules for i in items):
            return m.group(0)
        lines = []
        for item in items:
            name, _, alias = item.partition(" as ")
            target = f"{package}.{name}"
            if target in modules:
                parent, leaf = map_name(target).rsplit(".", 1)
                bound = alias or name
                lines.append(f"{indent}from {parent.replace(PKG, MAPPED, 1)} import {leaf}" + (f" as {bound}" if bound != leaf else ""))
            else:
                lines.append(f"{indent}from {map_name(package).replace(PKG, MAPPED, 1)} import {item}")
        return "\n".join(lines)
    return FROM_PKG.sub(fix, text)


def git(*args):
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def main() -> int:
    found = old_modules()
    if not found:
        print("nothing to move")
        return 0
    modules = set(found)
    # every module and package of the old tree, to tell "from . import x" modules from names
    for p in (ROOT / PKG).rglob("*.py"):
        modules.add(module_of(p))
    py_files = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and "tools" not in p.parts
                and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    new_place: dict[Path, Path] = {}
    for full, path in found.items():
        old = full[len(PKG) + 1:]
        if old in PACKAGES:
            src_dir = path.parent
            for p in src_dir.rglob("*.py"):
                new_place[p] = ROOT / PKG / Path(*MOVES[old].split(".")) / p.relative_to(src_dir)
            continue
        new = MOVES[old].split(".")
        if path.name == "__init__.py":
            new_place[path] = ROOT / PKG / Path(*new) / "__init__.py"
        else:
            new_place[path] = ROOT / PKG / Path(*new[:-1]) / f"{new[-1]}.py"
    # rewrite every python file in place (computing its new package), then move
    for p in py_files:
        text = p.read_text(encoding="utf-8")
        target = new_place.get(p, p)
        if p.is_relative_to(ROOT / PKG):
            text = rewrite_relative(text, package_of(p), package_of(target), modules)
        text = rewrite_from_package(text, modules)
        text = rewrite_absolute(text).replace(MAPPED, PKG)
        p.write_text(text, encoding="utf-8")
    for d in NEW_PACKAGES:
        (ROOT / PKG / d).mkdir(parents=True, exist_ok=True)
    for src, dst in sorted(new_place.items()):
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() and dst.name == "__init__.py" and src != dst:
            dst.unlink()
        git("mv", str(src.relative_to(ROOT)), str(dst.relative_to(ROOT)))
    for d in NEW_PACKAGES:
        init = ROOT / PKG / d / "__init__.py"
        if not init.exists():
            doc = INIT_DOC.get(d, f"The {d.split('/')[-1]} model family.")
            init.write_text(f'"""{doc}"""\n', encoding="utf-8")
            git("add", str(init.relative_to(ROOT)))
    nets_init = ROOT / PKG / "nets" / "__init__.py"
    if nets_init.exists():  # a docstring only: the networks now live in their family's folder
        git("rm", "-q", str(nets_init.relative_to(ROOT)))
    for old_dir in ("models", "nets", "metrics"):
        d = ROOT / PKG / old_dir
        if d.exists() and not any(d.rglob("*.py")):
            subprocess.run(["rm", "-rf", str(d)], check=True)
    # text files naming modules by path or dotted name
    for p in [ROOT / "pyproject.toml", ROOT / "Makefile", *ROOT.glob("docs/*.md"), ROOT / "README.md",
              *ROOT.glob("presets/*.yaml"), *ROOT.glob(".ci/*")]:
        if not p.is_file():
            continue
        text = rewrite_absolute(p.read_text(encoding="utf-8"))
        for src, dst in new_place.items():
            text = text.replace(str(src.relative_to(ROOT)), str(dst.relative_to(ROOT)))
        p.write_text(text, encoding="utf-8")
    # package data stays at gmdrit_cli/{pretrained,sample_data}: the modules that find it moved one level down
    for module, folder in (("inference/model_files.py", "pretrained"), ("data/unpaired.py", "sample_data")):
        f = ROOT / PKG / module
        f.write_text(f.read_text(encoding="utf-8").replace(f'Path(__file__).parent / "{folder}"',
                                                           f'Path(__file__).parents[1] / "{folder}"'), encoding="utf-8")
    packages = sorted(module_of(p) for p in (ROOT / PKG).rglob("__init__.py"))
    pyproject = ROOT / "pyproject.toml"
    listed = ", ".join(f'"{name}"' for name in [*packages, f"{PKG}.presets"])
    pyproject.write_text(re.sub(r"^packages = \[.*\]$", f"packages = [{listed}]", pyproject.read_text(encoding="utf-8"),
                                flags=re.M), encoding="utf-8")
    print(f"moved {len(new_place)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
