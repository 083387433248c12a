#!/usr/bin/env python3
"""Generate Python code (messages, .pyi stubs, gRPC stubs) from protos/.

The output lives in the robot client package (clients/python) because both the
client and the services import it. ``--check`` regenerates into a temporary
folder and fails when the committed code differs, so a proto edited without
regenerating never lands.

Usage:
    python scripts/gen_protos.py            # regenerate in place
    python scripts/gen_protos.py --check    # exit 1 on drift
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients" / "python"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(protos: Path, out: Path) -> None:
    """Run the pinned grpcio-tools protoc over every .proto under ``protos``."""
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    if not files:
        raise SystemExit(f"no .proto files under {protos}")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = [
        "protoc",
        f"-I{protos}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(out: Path) -> dict[str, Path]:
    """Map relative path -> file for every generated module under ``out``."""
    root = out / "visionloop"  # every proto lives under protos/visionloop/; ignore build/ and friends
    return {str(p.relative_to(out)): p for p in root.rglob("*") if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)}


def remove_stale(out: Path) -> None:
    """Delete generated modules so removed protos leave nothing behind."""
    for path in generated_files(out).values():
        path.unlink()


def check(protos: Path, out: Path) -> list[str]:
    """Return a description of every difference between fresh and committed code."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(protos, fresh_root)
        fresh = generated_files(fresh_root)
        committed = generated_files(out)
        problems = [f"missing: {name}" for name in sorted(fresh.keys() - committed.keys())]
        problems += [f"stale: {name}" for name in sorted(committed.keys() - fresh.keys())]
        problems += [
            f"differs: {name}"
            for name in sorted(fresh.keys() & committed.keys())
            if not filecmp.cmp(fresh[name], committed[name], shallow=False)
        ]
        return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when generated code drifts from the protos")
    parser.add_argument("--protos", type=Path, default=PROTOS, help="proto root (default: protos/)")
    parser.add_argument("--out", type=Path, default=OUT, help="output root (default: clients/python/)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.protos, args.out)
        if problems:
            print("generated code is out of date with protos/; run: python scripts/gen_protos.py", file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 1
        print("generated code matches protos/")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    remove_stale(args.out)
    generate(args.protos, args.out)
    print(f"generated {len(generated_files(args.out))} modules under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
