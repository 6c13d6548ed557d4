"""libFuzzer targets for the Cython entry points, run with atheris (docs/fuzzing.md).

    python3 -m tests.fuzz.fuzz_targets TARGET [--native | --asan] [-FLAG=VALUE ...] [CORPUS ...]

TARGET is one of:
  frame    parse_frame, every link type: [linktype index, options] + frame
  dns      parse_dns: the message
  capfile  CaptureWalker: [chunk size - 1] + a pcap/pcapng stream, walked whole and in chunks
  engine   Engine.feed/tick/flush: [count] + count 10-byte descriptors + the frames' bytes

--native loads coverage-instrumented copies of the extensions (python3 -m
tests.fuzz.build_native), so libFuzzer sees the C code's edges and comparisons; --asan loads
copies built with AddressSanitizer too (build_native --asan; the runner re-executes itself with
libasan preloaded). Without either, the extensions in agent/ run uninstrumented and only the
Python glue below gives coverage feedback. -FLAG=VALUE are libFuzzer flags
(-max_total_time=N, -runs=N, -jobs=N, ...).

Every input is copied to the end of a buffer followed by an inaccessible page, so a read one
byte past the input faults even without ASan. Each target checks the invariants the property
tests check (tests/property/invariants.py) and raises AssertionError when one breaks: atheris
reports it as a crash and writes the input to tests/fuzz/artifacts/.

The corpus defaults to tests/fuzz/corpus/TARGET (seeded from tests/fuzz/seeds.py), the
dictionary to tests/fuzz/dicts/TARGET.dict. Without atheris the runner falls back to a plain
mutation loop over the seeds (no coverage feedback) and says so.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import mmap
import os
import random
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

try:
    import atheris
except ImportError:  # pragma: no cover - the fallback loop below
    atheris = None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODULES = ("decode", "dns", "capfile", "engine")
LINKTYPES = (0, 1, 9, 10, 12, 14, 50, 51, 101, 108, 113, 228, 229, 276, 2, 0xFFFF)
MAX_LEN = {"frame": 4096, "dns": 8192, "capfile": 16384, "engine": 16384}
ENGINE_DESC = struct.Struct("<HHBBhH")  # offset, caplen, linktype index, flags, step ms, vlan
T0_NS = 1_700_000_000 * 10**9


class GuardedBuffer:
    """Hands out an input as a memoryview that ends right before a PROT_NONE page."""

    def __init__(self, capacity: int = 1 << 20) -> None:
        page = mmap.PAGESIZE
        self.size = -(-capacity // page) * page
        self.map = mmap.mmap(-1, self.size + page)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        if libc.mprotect(address + self.size, page, 0) != 0:  # PROT_NONE
            raise OSError(ctypes.get_errno(), "mprotect")
        self.view = memoryview(self.map)

    def place(self, data: bytes) -> memoryview:
        data = data[: self.size]
        start = self.size - len(data)
        self.view[start : self.size] = data
        return self.view[start : self.size]


# --- loading the instrumented extensions ------------------------------------------------------


def install_native(variant: str) -> list[Path]:
    """Imports agent._NAME from tests/fuzz/.build instead of agent/, before anything else does."""
    import agent  # the package itself stays the one in the tree
    from tests.fuzz.build_native import module_path

    paths = []
    for name in MODULES:
        path = module_path(name, variant)
        if not path.exists():
            flag = "" if variant == "plain" else f" --{variant}"
            sys.exit(f"{path} is missing: run python3 -m tests.fuzz.build_native{flag}")
        spec = importlib.util.spec_from_file_location(f"agent._{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"agent._{name}"] = module
        spec.loader.exec_module(module)
        setattr(agent, f"_{name}", module)
        paths.append(path)
    return paths


class NativeCoverage:
    """Registers the instrumented modules' counters with the libFuzzer atheris loaded.

    atheris loads libFuzzer with RTLD_LOCAL when fuzzing starts, so the modules cannot
    register themselves when they load: this runs on the first input, from inside the loop,
    where dlopen of the same file hands back the loaded copy.
    """

    HOOKS = (
        "cmp1", "cmp2", "cmp4", "cmp8",
        "const_cmp1", "const_cmp2", "const_cmp4", "const_cmp8", "switch",
    )  # fmt: skip

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.done = not paths

    def register(self) -> None:
        self.done = True
        core = Path(atheris.__file__).parent
        libfuzzer = ctypes.CDLL(str(next(core.glob("core_with_libfuzzer*.so"))))
        hooks = (ctypes.c_void_p * len(self.HOOKS))(
            *[ctypes.cast(getattr(libfuzzer, f"__sanitizer_cov_trace_{h}"), ctypes.c_void_p).value
              for h in self.HOOKS]
        )  # fmt: skip
        for path in self.paths:
            module = ctypes.CDLL(str(path))
            u8p, uptr = ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_size_t)
            start, stop, pcs, pcs_stop = u8p(), u8p(), uptr(), uptr()
            module.tapsense_cov_info(
                ctypes.byref(start), ctypes.byref(stop), ctypes.byref(pcs), ctypes.byref(pcs_stop)
            )
            # getattr: a dunder name written out inside a class would be name-mangled
            getattr(libfuzzer, "__sanitizer_cov_8bit_counters_init")(start, stop)
            getattr(libfuzzer, "__sanitizer_cov_pcs_init")(pcs, pcs_stop)
            module.tapsense_cov_set_hooks(hooks)


# --- the targets ------------------------------------------------------------------------------


def make_targets(buffer: GuardedBuffer) -> dict[str, Callable[[bytes], None]]:
    """The four targets over the extensions now in sys.modules."""
    from agent._capfile import CaptureWalker
    from agent._decode import parse_frame
    from agent._dns import parse_dns
    from agent._engine import EV_FLOW, EV_PAYLOAD, EV_TICK, Engine
    from tests.property.invariants import (
        DESC,
        check_dns_result,
        check_frame_result,
        check_walk,
        check_walker_counters,
    )

    def frame(data: bytes) -> None:
        if len(data) < 2:
            return
        linktype = LINKTYPES[data[0] % len(LINKTYPES)]
        opts = data[1]
        vlan_tci = (opts >> 1) * 33 if opts & 1 else -1
        view = buffer.place(data[2:])
        status, fields = parse_frame(view, linktype, vlan_tci)
        check_frame_result(data[2:], status, fields)
        # Without VLAN and tunnel ids in the key, only ctx changes.
        status2, plain = parse_frame(view, linktype, vlan_tci, False, False)
        assert status2 == status
        if "ctx" in fields:
            assert plain["ctx"] == 0 and {**plain, "ctx": fields["ctx"]} == fields
        else:
            assert plain == fields

    def dns(data: bytes) -> None:
        status, parsed = parse_dns(buffer.place(data))
        check_dns_result(data, status, parsed)

    def walk(stream: bytes, chunk: int) -> tuple[list[tuple], dict[str, int]]:
        """As agent/capfile.py walks: the unconsumed tail goes before the next chunk."""
        walker = CaptureWalker()
        got: list[tuple] = []
        pending, pos = b"", 0
        while pos < len(stream) and not walker.stopped:
            buf = pending + stream[pos : pos + chunk]
            pos += chunk
            used, count = walker.walk(buffer.place(buf))
            for ts, off, cap, wire, lt, iface in check_walk(buf, used, count, walker.descriptors):
                got.append((ts, cap, wire, lt, iface, buf[off : off + cap]))
            pending = buf[used:]
        walker.finish(len(pending) + max(0, len(stream) - pos))
        counters = walker.counters()
        check_walker_counters(counters, len(got))
        return got, counters

    def capfile(data: bytes) -> None:
        if not data:
            return
        stream = data[1:]
        whole = walk(stream, max(len(stream), 1))
        chunked = walk(stream, data[0] + 1)
        assert whole == chunked, "walking in chunks differs from walking the whole stream"

    def engine(data: bytes) -> None:
        if not data:
            return
        count = min(data[0] % 17, (len(data) - 1) // ENGINE_DESC.size)
        frames = data[1 + count * ENGINE_DESC.size :]
        descs, ts, bad = b"", T0_NS, 0
        for i in range(count):
            at = 1 + i * ENGINE_DESC.size
            off, cap, lt, flags, step_ms, vlan = ENGINE_DESC.unpack_from(data, at)
            ts = max(0, ts + step_ms * 1_000_000)
            wire = cap + (100 if flags & 2 else 0)
            descs += DESC.pack(
                ts, off, cap, wire, LINKTYPES[lt % len(LINKTYPES)], vlan, flags & 1, 0
            )
            bad += int(off + cap > len(frames) or not frames)
        eng = Engine(max_flows=4, frag_max_datagrams=3, active_timeout_s=5.0)
        out = eng.feed(buffer.place(frames), descs, count)
        out += eng.tick(ts + 400 * 10**9)
        out += eng.flush()
        counters = eng.counters()
        assert counters["bad_descriptor"] == bad, (counters, bad)
        assert counters["packets"] == count - bad
        assert eng.active_flows == 0 and counters["flows_created"] == counters["flows_ended"]
        flows = [o for o in out if o[0] == EV_FLOW]
        assert len(flows) == counters["flows_ended"] + counters["interim_records"]
        for o in out:
            assert o[0] in (EV_TICK, EV_PAYLOAD, EV_FLOW)
            if o[0] == EV_PAYLOAD:
                assert len(o[13]) <= 65535 and o[5] in (6, 17)

    targets = {"frame": frame, "dns": dns, "capfile": capfile, "engine": engine}
    if atheris is not None:  # Python-level coverage of the glue and the checks
        from tests.property import invariants

        for name in ("check_dns_result", "check_frame_result", "check_walk"):
            setattr(invariants, name, atheris.instrument_func(getattr(invariants, name)))
        targets = {k: atheris.instrument_func(v) for k, v in targets.items()}
    return targets


# --- the runner -------------------------------------------------------------------------------


def seed_corpus(target: str, directory: Path) -> int:
    """Writes the target's seeds into directory (named by content, so reruns add nothing)."""
    from tests.fuzz import seeds

    directory.mkdir(parents=True, exist_ok=True)
    made = {
        "frame": seeds.frame_inputs,
        "dns": seeds.dns_inputs,
        "capfile": seeds.capfile_inputs,
        "engine": seeds.engine_inputs,
    }[target]
    n = 0
    for data in made():
        path = directory / f"seed-{hashlib.sha1(data).hexdigest()}"
        if not path.exists():
            path.write_bytes(data)
        n += 1
    return n


def reexec_with_asan() -> None:
    """ASan must be the first library loaded: run this module again with libasan preloaded."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return

    def lib(name: str) -> str:
        found = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True)
        return found.stdout.strip()

    # libstdc++ too: ASan's __cxa_throw interceptor needs the real one loaded at start, and
    # atheris (pybind11) throws when a target raises.
    env = dict(os.environ, LD_PRELOAD=f"{lib('libasan.so')} {lib('libstdc++.so')}")
    # No leak check (CPython leaks at exit by design); a small quarantine keeps RSS flat.
    env.setdefault(
        "ASAN_OPTIONS",
        "detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=32:malloc_context_size=4",
    )
    os.execve(sys.executable, [sys.executable, "-m", "tests.fuzz.fuzz_targets", *sys.argv[1:]], env)


def fallback_loop(target: Callable[[bytes], None], corpus: list[Path], flags: list[str]) -> None:
    """Random mutations of the corpus, without coverage feedback, for -max_total_time s."""
    opts = dict(f.lstrip("-").split("=", 1) for f in flags if "=" in f)
    deadline = time.monotonic() + float(opts.get("max_total_time", 60))
    runs = int(opts.get("runs", -1))
    max_len = int(opts.get("max_len", 4096))
    rng = random.Random(int(opts.get("seed", 0)) or None)
    pool = [p.read_bytes() for d in corpus for p in sorted(d.iterdir()) if p.is_file()] or [b""]
    n = 0
    print(f"fallback loop (no atheris): {len(pool)} inputs, no coverage feedback", file=sys.stderr)
    while time.monotonic() < deadline and n != runs:
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(5)
            at = rng.randint(0, len(data))
            if op == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif op == 2:
                del data[at : at + rng.randint(1, 8)]
            elif op == 3:
                data = data[:at]
            else:
                other = rng.choice(pool)
                data[at:at] = other[rng.randint(0, len(other)) :][: rng.randint(1, 64)]
        data = bytes(data[:max_len])
        n += 1
        try:
            target(data)
        except Exception:
            path = HERE / "artifacts" / f"crash-{hashlib.sha1(data).hexdigest()}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            traceback.print_exc()
            print(f"crash after {n} runs; input written to {path}", file=sys.stderr)
            sys.exit(1)
    print(f"Done {n} runs (fallback loop)", file=sys.stderr)


def replay(target: Callable[[bytes], None], corpus: list[Path]) -> None:
    """Runs every file of the corpus once (no fuzzing): for --gcov, or to check a crash."""
    files = [p for d in corpus for p in (sorted(d.iterdir()) if d.is_dir() else [d])]
    for path in files:
        target(path.read_bytes())
    print(f"replayed {len(files)} inputs", file=sys.stderr)


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] not in MAX_LEN:
        sys.exit(__doc__)
    target_name, rest = argv[0], argv[1:]
    modes = {"--native", "--asan", "--gcov", "--fallback", "--replay"} & set(rest)
    rest = [a for a in rest if a not in modes]
    if "--asan" in modes:
        reexec_with_asan()
    variant = next((m[2:] for m in ("--asan", "--gcov", "--native") if m in modes), None)
    paths = install_native("plain" if variant == "native" else variant) if variant else []
    flags = [a for a in rest if a.startswith("-")]
    corpus = [Path(a) for a in rest if not a.startswith("-")]
    for directory in corpus:
        if not directory.exists():  # libFuzzer wants its corpus directories to exist
            directory.mkdir(parents=True)
    if not corpus:
        corpus = [HERE / "corpus" / target_name]
        seed_corpus(target_name, corpus[0])
    target = make_targets(GuardedBuffer())[target_name]
    if "--replay" in modes or variant == "gcov":
        replay(target, corpus)
        return
    names = {f.split("=", 1)[0] for f in flags}
    defaults = {
        "-max_len": str(MAX_LEN[target_name]),
        "-dict": str(HERE / "dicts" / f"{target_name}.dict"),
        "-artifact_prefix": str(HERE / "artifacts" / f"{target_name}-"),
        "-print_final_stats": "1",
        "-timeout": "10",
        "-rss_limit_mb": "4096",
    }
    flags += [f"{k}={v}" for k, v in defaults.items() if k not in names]
    (HERE / "artifacts").mkdir(exist_ok=True)
    if "--fallback" in modes or atheris is None:
        fallback_loop(target, corpus, flags)
        return
    coverage = NativeCoverage(paths if variant in ("native", "asan") else [])

    def test_one_input(data: bytes) -> None:
        if not coverage.done:
            coverage.register()
        target(data)

    what = {"asan": "asan+coverage", "native": "coverage", None: "uninstrumented"}[variant]
    print(f"tapsense fuzz: target {target_name}, extensions {what}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *flags, *map(str, corpus)], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
