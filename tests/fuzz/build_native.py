"""Builds coverage-instrumented copies of the Cython extensions for the fuzz targets.

    python3 -m tests.fuzz.build_native [--asan | --gcov]

Each ext/NAME.pyx is compiled again, outside the package, to tests/fuzz/.build/VARIANT/
_NAME.<ext-suffix>: "plain" with GCC's -fsanitize-coverage=trace-pc,trace-cmp and
tests/fuzz/cov_shim.c (see there), "asan" with -fsanitize=address as well, "gcov" with
--coverage and Cython line directives, to count which .pyx/.pxd lines a corpus reaches. The
fuzz runner loads these in place of agent/_NAME when asked (--native, --asan, --gcov); the
copies in agent/ are never touched.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD = HERE / ".build"
MODULES = ("decode", "dns", "capfile", "engine")
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def module_path(name: str, variant: str) -> Path:
    return BUILD / variant / f"_{name}{SUFFIX}"


def build(variant: str) -> Path:
    """variant: "plain" (coverage for libFuzzer), "asan" (and AddressSanitizer), or "gcov"
    (line counts for measuring a corpus: see docs/fuzzing.md)."""
    out = BUILD / variant
    out.mkdir(parents=True, exist_ok=True)
    # The sources as built, for coverage_report to read line numbers from, and the commit.
    (out / "src").mkdir(exist_ok=True)
    for source in [*ROOT.glob("ext/*.pyx"), *ROOT.glob("ext/*.pxd")]:
        shutil.copy2(source, out / "src" / source.name)
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True)
    (out / "COMMIT").write_bytes(head.stdout)
    include = sysconfig.get_paths()["include"]
    shim = out / "cov_shim.o"
    sanitize = ["-fsanitize=address"] if variant == "asan" else []
    # The shim itself is not instrumented: its callbacks would call themselves.
    run(["gcc", "-c", "-O2", "-fPIC", *sanitize, str(HERE / "cov_shim.c"), "-o", str(shim)])
    for name in MODULES:
        c_file, o_file = out / f"{name}.c", out / f"{name}.o"
        pyx = ROOT / "ext" / f"{name}.pyx"
        cython = [sys.executable, "-m", "cython", "-3", "--module-name", f"agent._{name}"]
        if variant == "gcov":  # so gcov counts lines of the .pyx/.pxd, not of the C
            cython.append("--line-directives")
        run([*cython, "-I", str(ROOT / "ext"), str(pyx), "-o", str(c_file)])
        flags = ["-fPIC", "-g", "-fno-omit-frame-pointer", "-Wno-unused-function"]
        if variant == "gcov":
            flags += ["-O0", "--coverage"]
        else:
            flags += ["-O1", "-fsanitize-coverage=trace-pc,trace-cmp", *sanitize]
        includes = ["-I", str(ROOT / "ext"), "-I", include]
        run(["gcc", "-c", *flags, *includes, str(c_file), "-o", str(o_file)])
        link = [str(o_file), str(shim)] if variant != "gcov" else [str(o_file)]
        run(["gcc", "-shared", *flags, *link, "-o", str(module_path(name, variant))])
    return out


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asan", action="store_true", help="also AddressSanitizer")
    parser.add_argument("--gcov", action="store_true", help="line counts instead")
    args = parser.parse_args()
    print(build("gcov" if args.gcov else "asan" if args.asan else "plain"))


if __name__ == "__main__":
    main()
