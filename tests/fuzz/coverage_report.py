"""Line coverage of ext/*.pyx and ext/*.pxd reached by the fuzz corpora (docs/fuzzing.md).

    python3 -m tests.fuzz.build_native --gcov
    python3 -m tests.fuzz.coverage_report [TARGET ...]

Replays each target's corpus (tests/fuzz/corpus/TARGET) through the --gcov build, then reads
gcov's counts. A .pxd is compiled into several modules (_decode.pxd into decode and engine), so
a line counts as reached when any module reached it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.fuzz.build_native import BUILD, MODULES, ROOT

TARGETS = ("frame", "dns", "capfile", "engine")


def line_counts(out: Path) -> dict[str, dict[int, bool]]:
    """{ext source file: {line: reached}} over every module's gcov counts."""
    reached: dict[str, dict[int, bool]] = defaultdict(dict)
    for name in MODULES:
        report = subprocess.run(
            ["gcov", "--json-format", "--stdout", "-o", ".", f"{name}.c"],
            cwd=out,
            capture_output=True,
            check=True,
            text=True,
        )
        for chunk in report.stdout.splitlines():
            for source in json.loads(chunk)["files"]:
                path = Path(source["file"]).name
                if not (out / "src" / path).exists():
                    continue
                # Cython's utility code carries line directives of its own templates.
                length = len((out / "src" / path).read_text().splitlines())
                for line in source["lines"]:
                    n = line["line_number"]
                    if n > length:
                        continue
                    reached[path][n] = reached[path].get(n, False) or line["count"] > 0
    return reached


def main() -> None:
    out = BUILD / "gcov"
    if not out.exists():
        sys.exit("run python3 -m tests.fuzz.build_native --gcov first")
    for stale in out.glob("*.gcda"):
        stale.unlink()
    for target in sys.argv[1:] or TARGETS:
        cmd = [sys.executable, "-m", "tests.fuzz.fuzz_targets", target, "--gcov"]
        subprocess.run(cmd, cwd=ROOT, check=True)
    reached = line_counts(out)
    print(f"sources of {(out / 'COMMIT').read_text().strip()}")
    print(f"{'source':<20} {'lines reached':>14} {'of':>6} {'share':>7}")
    for source in sorted(reached):
        lines = reached[source]
        hit = sum(lines.values())
        print(f"{source:<20} {hit:>14} {len(lines):>6} {hit / len(lines):>7.0%}")


if __name__ == "__main__":
    main()
