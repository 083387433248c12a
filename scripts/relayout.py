#!/usr/bin/env python3
"""Moves the server packages into the layout of issue [12] and rewrites every import, path and
``package.module:Class`` string that names a moved module. Run from the repository root on a
clean work tree; it stages the moves (``git mv``) and the rewritten files, and commits nothing.

    .venv/bin/python scripts/relayout.py && git commit -m "..."

Rerunnable on another branch of the same code: moves whose source is gone are skipped, and the
rewrite works on whatever text names the old modules (imports, strings, docs, configuration).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

S = "services/visionloop"

# (old, new), files before the folders that hold them: a file listed first leaves its folder
# before the folder moves.
MOVES: list[tuple[str, str]] = [
    # one CLI package, one module per command group
    (f"{S}/cli.py", f"{S}/cli/main.py"),
    (f"{S}/hub_commands.py", f"{S}/cli/hub_commands.py"),
    (f"{S}/detect_command.py", f"{S}/cli/detect.py"),
    (f"{S}/tokens_command.py", f"{S}/cli/tokens.py"),
    (f"{S}/model_import.py", f"{S}/lib/model_format/onnx_import.py"),
    (f"{S}/annotator/cli.py", f"{S}/cli/annotate.py"),
    (f"{S}/demo/commands.py", f"{S}/cli/demo.py"),
    (f"{S}/services.py", f"{S}/server/catalog.py"),
    # the library layer: what several services use and none owns
    (f"{S}/detector/preprocess.py", f"{S}/lib/preprocess.py"),
    (f"{S}/detector/decoders.py", f"{S}/lib/decoders.py"),
    (f"{S}/detector/postprocess.py", f"{S}/lib/postprocess.py"),
    (f"{S}/trainer/evaluation.py", f"{S}/lib/evaluation.py"),
    (f"{S}/loop/storage.py", f"{S}/lib/storage.py"),
    (f"{S}/runtime/archives.py", f"{S}/lib/archives.py"),
    (f"{S}/runtime/model_json.py", f"{S}/lib/model_format/model_json.py"),
    (f"{S}/lib/onnx_graph.py", f"{S}/lib/model_format/onnx_graph.py"),
    (f"{S}/lib/ultralytics.py", f"{S}/lib/model_format/ultralytics.py"),
    (f"{S}/converter/triton_entries.py", f"{S}/lib/model_format/triton.py"),
    (f"{S}/trainer/reference/model.py", f"{S}/lib/centernet/model.py"),
    (f"{S}/trainer/reference/artifacts.py", f"{S}/lib/centernet/artifacts.py"),
    # development tools: test servers, the Triton launcher, synthetic data
    (f"{S}/detector/triton_server.py", f"{S}/testing/triton.py"),
    (f"{S}/synthetic", f"{S}/testing/synthetic"),
    ("tests/hub/stacks.py", f"{S}/testing/servers.py"),
    ("tests/radosgw.py", f"{S}/testing/radosgw.py"),
    ("tests/certs.py", f"{S}/testing/certs.py"),
    ("tests/detector/frames.py", f"{S}/testing/frames.py"),
    # one name per thing: the hub's own state, and the services' clients of the hub
    (f"{S}/loop/hub.py", f"{S}/server/hub/state.py"),
    (f"{S}/trainer/hub.py", f"{S}/server/trainer/hub_client.py"),
    (f"{S}/converter/hub.py", f"{S}/server/converter/hub_client.py"),
    (f"{S}/annotator/hub.py", f"{S}/server/annotator/hub_client.py"),
    # servers apart from the contracts (visionloop.<service>.v1 stays in the client distribution)
    (f"{S}/loop", f"{S}/server/hub"),
    (f"{S}/detector", f"{S}/server/detector"),
    (f"{S}/trainer", f"{S}/server/trainer"),
    (f"{S}/converter", f"{S}/server/converter"),
    (f"{S}/annotator", f"{S}/server/annotator"),
]

# Names that moved out of a module by hand after the package move (old layout's name first): an
# import of one of these is rewritten to its new home, aliased to the old name where it changed.
MODEL_JSON = "visionloop.lib.model_format.model_json"
SYMBOLS: dict[str, str] = {
    "visionloop.trainer.packaging": MODEL_JSON,
    "visionloop.trainer.packaging.zip_folder": f"{MODEL_JSON}.pack",
    "visionloop.converter.artifacts.pack": f"{MODEL_JSON}.pack",
    "visionloop.converter.artifacts.write_model_json": f"{MODEL_JSON}.write_model_json",
    "visionloop.converter.artifacts.MODEL_JSON": f"{MODEL_JSON}.MODEL_JSON",
    "visionloop.converter.artifacts.MAX_MODEL_JSON_BYTES": f"{MODEL_JSON}.MAX_MODEL_JSON_BYTES",
    "visionloop.loop.models.MODEL_JSON": f"{MODEL_JSON}.MODEL_JSON",
    "visionloop.loop.models.MAX_MODEL_JSON_BYTES": f"{MODEL_JSON}.MAX_MODEL_JSON_BYTES",
    "visionloop.trainer.reference.artifacts.zip_folder": f"{MODEL_JSON}.pack",
    "visionloop.runtime.config.ImageLimitSettings": "visionloop.lib.images.ImageLimitSettings",
    "visionloop.detector.models.read_model_folder": "visionloop.lib.inference.read_model_folder",
    "visionloop.detector.backends.base.BackendError": "visionloop.lib.inference.ModelError",
    "visionloop.detector.app.unpack": "visionloop.lib.inference.unpack_model",
    "visionloop.annotator.masks.iou": "visionloop.lib.geometry.mask_iou",
    "visionloop.synthetic.world.Annotation": "visionloop.lib.training_data.Annotation",
    "visionloop.synthetic.world.Sample": "visionloop.lib.training_data.Sample",
    "visionloop.cli.embedded": "visionloop.server.embedded.embedded",
    "tests.hub.stacks.free_port": "visionloop.testing.ports.free_port",
    "visionloop.detector.triton_server.free_port": "visionloop.testing.ports.free_port",
    "visionloop.trainer.reference.distributed.main": "visionloop.testing.synthetic.distributed.main",
}

# Regular packages (an __init__.py each); alembic's migration folders stay plain folders.
PACKAGES_UNDER = [f"{S}/server", f"{S}/cli", f"{S}/testing", f"{S}/lib"]
NOT_PACKAGES = ("migrations",)
INIT_DOC = {
    f"{S}/server": "The services' servers, one package each; the contracts are `visionloop.<service>.v1`.",
    f"{S}/server/hub": "The hub: projects, images, annotations, models, deployments, trainings, nodes, events.",
    f"{S}/server/detector": "The detector: inference for robots.",
    f"{S}/server/trainer": "The trainer: trains the next model.",
    f"{S}/server/converter": "The converter: turns models into deployable formats.",
    f"{S}/server/annotator": "The annotator: interactive annotation, pre-annotation and ranking.",
    f"{S}/cli": "The ``visionloop`` command: one module per command group.",
    f"{S}/testing": "Development tools for tests, benchmarks and the demo: test servers, Triton, synthetic data.",
    f"{S}/lib/model_format": "The model format: model.json, the ONNX graph it describes, Triton's repository layout.",
    f"{S}/lib/centernet": "The reference detector (PyTorch): what the trainer trains and the converter exports.",
}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".ini", ".sh", ".tpl", ".mako", ".pbtxt"}
TEXT_NAMES = {"Dockerfile", "Dockerfile.trainer", "bootstrap", "test", "fuzz", "run", "prove", "Containerfile"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def module_of(path: str) -> str | None:
    """The dotted module a repository path imports as (services/ and the tests' root)."""
    p = Path(path)
    if p.suffix == ".py":
        p = p.with_suffix("")
        if p.name == "__init__":
            p = p.parent
    parts = p.parts
    if parts[:1] == ("services",):
        parts = parts[1:]
    elif parts[:1] != ("tests",):
        return None
    return ".".join(parts)


def renames() -> tuple[dict[str, str], dict[str, str]]:
    """Old module -> new module and old path -> new path, from the tables alone: a rerun on the
    new layout (say after merging a branch written in the old one) rewrites the same names."""
    modules: dict[str, str] = {}
    paths: dict[str, str] = {}
    for old, new in MOVES:
        paths[old] = new
        old_mod, new_mod = module_of(old), module_of(new)
        if old_mod and new_mod:
            modules[old_mod] = new_mod
    modules.update(SYMBOLS)
    return modules, paths


def is_module(name: str) -> bool:
    """Whether ``name`` is a module of the work tree as it is now (under services/ or tests)."""
    base = Path("services" if not name.startswith("tests") else ".", *name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def main() -> int:
    if git("status", "--porcelain", "--untracked-files=no").strip():
        print("relayout: the work tree has changes; commit them first", file=sys.stderr)
        return 1
    moves = [(old, new) for old, new in MOVES if Path(old).exists()]
    modules, paths = renames()

    for old, new in moves:
        move(old, new)

    for root in PACKAGES_UNDER:
        for folder in [Path(root), *sorted(p for p in Path(root).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts or any(n in folder.parts for n in NOT_PACKAGES):
                continue
            if not any(folder.glob("*.py")) and not any(folder.glob("*/*.py")):
                continue
            init = folder / "__init__.py"
            if not init.exists():
                doc = INIT_DOC.get(folder.as_posix(), "")
                init.write_text(f'"""{doc}"""\n' if doc else "")
                git("add", init.as_posix())

    changed = rewrite_all(modules, paths)
    for old, _ in moves:  # folders left holding only byte code
        if Path(old).is_dir() and not [f for f in Path(old).rglob("*") if f.is_file() and f.suffix != ".pyc"]:
            shutil.rmtree(old)
    python_files = [f for f in changed if f.endswith(".py")] + [new for _, new in moves if Path(new).exists()]
    ruff = Path(".venv/bin/ruff")
    if ruff.exists() and python_files:  # the imports renamed sort differently
        subprocess.run([str(ruff), "check", "--fix", "--select", "I", "-q", *python_files], check=False)
        subprocess.run([str(ruff), "format", "-q", *python_files], check=True)
        git("add", "-A", *python_files)
    return 0


def move(old: str, new: str) -> None:
    """``git mv``; a folder whose destination exists already moves entry by entry."""
    if Path(old).is_dir() and Path(new).is_dir():
        for child in sorted(Path(old).iterdir()):
            if child.name != "__pycache__":
                move(child.as_posix(), f"{new}/{child.name}")
        return
    Path(new).parent.mkdir(parents=True, exist_ok=True)
    git("mv", old, new)
    print(f"git mv {old} {new}")


def map_module(name: str, modules: dict[str, str], attribute: bool = True) -> str:
    """``name`` with its longest moved prefix renamed; contracts (``*.v1``) stay where they are.
    ``attribute``: a name followed by ``:`` (an entry point) names something in the module."""
    parts = name.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in modules:
            if n == len(parts) and not attribute and modules[prefix].startswith(prefix + ".") and is_module(prefix):
                return name  # the new package that took the old module's name (visionloop.cli)
            if n < len(parts) and parts[n] == "v1":
                return name
            if n < len(parts) and modules[prefix].startswith(prefix + ".") and is_module(f"{prefix}.{parts[n]}"):
                return name  # a module of the new package that took the old module's name (visionloop.cli)
            return ".".join([modules[prefix], *parts[n:]])
    return name


FROM_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<module>(?:visionloop|tests)(?:\.\w+)*) import "
    r"(?:\((?P<paren>[^)]*)\)|(?P<plain>[^\n#]*[^\s#]))(?P<comment>[ \t]*#[^\n]*)?$",
    re.MULTILINE,
)
DOTTED = re.compile(r"(?<![\w.\x00])(?:visionloop|tests)(?:\.\w+)+")
DONE = "\x00"  # marks a module name the import rewrite already renamed, so it is not renamed twice


def rewrite_from_imports(text: str, modules: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        module = match["module"]
        body = match["paren"] if match["paren"] is not None else match["plain"]
        entries = []
        for raw in body.split("\n"):
            code = raw.split("#", 1)[0]
            entries += [e.strip() for e in code.split(",") if e.strip()]
        if match["paren"] is not None and "#" in body:
            # comments inside the parentheses: keep the statement whole when one package suffices
            targets = {_target(module, e, modules)[0] for e in entries}
            if len(targets) == 1:
                return match.group(0).replace(f"from {module} import", f"from {DONE}{targets.pop()} import", 1)
            print(f"relayout: comments dropped in a split import from {module}", file=sys.stderr)
        groups: dict[str, list[str]] = {}
        for entry in entries:
            package, name = _target(module, entry, modules)
            groups.setdefault(package, []).append(name)
        if len(groups) == 1:
            ((package, names),) = groups.items()
            if names == entries:  # only the module moved: keep the statement as it was written
                head = f"from {module} import"
                return match.group(0).replace(head, f"from {DONE}{package} import", 1)
        indent, comment = match["indent"], match["comment"] or ""
        if len(groups) == 1 and match["paren"] is None:
            ((package, names),) = groups.items()
            return f"{indent}from {DONE}{package} import {', '.join(names)}{comment}"
        lines = []
        for package, names in groups.items():
            lines.append(f"{indent}from {DONE}{package} import {', '.join(names)}")
        if comment:
            lines[0] += comment
        return "\n".join(lines)

    return FROM_IMPORT.sub(replace, text)


def _target(module: str, entry: str, modules: dict[str, str]) -> tuple[str, str]:
    """Where ``from module import entry`` comes from after the moves, and the name to import."""
    name, _, alias = entry.partition(" as ")
    name, alias = name.strip(), alias.strip()
    full = f"{module}.{name}"
    if module in modules and modules[module].startswith(module + ".") and is_module(full):
        return module, entry  # a module of the new package that took the old module's name (visionloop.cli)
    if full in modules:
        moved = map_module(full, modules)
        package, _, new_name = moved.rpartition(".")
        if new_name != name and not alias:
            alias = name
        return package, f"{new_name} as {alias}" if alias else new_name
    return map_module(module, modules), entry


def rewrite_paths(text: str, paths: dict[str, str]) -> str:
    for old in sorted(paths, key=len, reverse=True):
        if old in text:
            text = re.sub(re.escape(old) + r"(?![\w])", paths[old], text)
    return text


def rewrite_all(modules: dict[str, str], paths: dict[str, str]) -> list[str]:
    """Rewrites every text file that names a moved module or path; returns the files changed."""
    changed = []
    files = [f for f in git("ls-files").split("\n") if f]
    for name in files:
        path = Path(name)
        if "/v1/" in name or name.startswith("node_modules/") or name == "scripts/relayout.py":
            continue
        if path.suffix not in TEXT_SUFFIXES and path.name not in TEXT_NAMES:
            continue
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = text
        if path.suffix == ".py":
            new = rewrite_from_imports(new, modules)
        new = DOTTED.sub(lambda m: map_module(m[0], modules, attribute=m.string[m.end() : m.end() + 1] == ":"), new)
        new = rewrite_paths(new, paths).replace(DONE, "")
        if new != text:
            path.write_text(new)
            git("add", name)
            changed.append(name)
    return changed


if __name__ == "__main__":
    sys.exit(main())
