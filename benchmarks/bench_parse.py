"""Benchmark `auditfwd parse` side by side with libauparse's C tools, on one core, in one run.

    python benchmarks/bench_parse.py [--records 1000000] [--small 250000] [--repeat 1]

Generates a realistic hypervisor log (mostly execve and file events with EXECVE/PATH/PROCTITLE,
some network, AVC, user and libvirt records) with ``forwarder.generate``, then measures on the
same file, pinned to one CPU:

* ``auditfwd parse`` (parse, assemble, normalize to ECS, NDJSON out), with the core compiled by
  mypyc when it is compiled in place (``python setup.py build_ext --inplace``), and on its pure
  Python sources (a copy of the package without the compiled modules);
* ``ausearch --format csv`` (libauparse's C normalizer, the peer);
* ``ausearch --raw`` (libauparse's grouping alone, a lower bound on work).

Reports records/s, the ratio to each peer, CPU seconds per 1,000 execve events and peak RSS at
two input sizes (to show memory does not grow with the input).  Results are printed and written to
``benchmarks/out/parse.json``.  Speed is not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class Measurement:
    tool: str
    records: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def generate(path: pathlib.Path, records: int, seed: int) -> tuple[int, int]:
    """Write the log; return (records, execve events)."""
    from forwarder.generate import GeneratorOptions, write_log

    written = write_log(path, GeneratorOptions(seed=seed, records=records))
    execve = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(b"type=EXECVE") and b" argc=" in line:
                execve += 1
    return written, execve


def run_measured(tool: str, command: list[str], records: int) -> Measurement:
    """Run a command pinned to one CPU with output discarded; time it and read its peak RSS."""
    pinned = ["taskset", "-c", "0", *command] if shutil.which("taskset") else command
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(pinned, stdout=sink, stderr=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of children is the largest of any child so far: measure the peak per run with
    # /usr/bin/time when present, else fall back to this coarse figure.
    peak = after.ru_maxrss / 1024
    return Measurement(tool, records, seconds, cpu, peak)


def peak_rss_mib(command: list[str]) -> float:
    """Peak RSS of one command alone, via GNU time's %M (KiB)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(gnu_time):
        return float("nan")
    done = subprocess.run(
        [gnu_time, "-f", "%M", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def best_of(repeat: int, tool: str, command: list[str], records: int) -> Measurement:
    runs = [run_measured(tool, command, records) for _ in range(repeat)]
    best = min(runs, key=lambda m: m.seconds)
    best.peak_rss_mib = peak_rss_mib(command)
    return best


def compiled_in_place() -> bool:
    """True when the package's core is compiled in place (see setup.py)."""
    return any((REPO / "forwarder").glob("_compiled__mypyc*.so"))


def pure_python_copy(directory: pathlib.Path) -> pathlib.Path:
    """A copy of the package without compiled modules, in ``directory``; returns ``directory``."""
    ignored = shutil.ignore_patterns("*.so", "__pycache__", "_compiled_sources.sha256")
    shutil.copytree(REPO / "forwarder", directory / "forwarder", ignore=ignored)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000, help="second size, for the memory comparison")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=pathlib.Path, default=OUT)
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="auditfwd-pure-") as pure_dir:
        builds = {"pure": pure_python_copy(pathlib.Path(pure_dir))}
        if compiled_in_place():
            builds = {"compiled": REPO, **builds}
        else:
            print("the core is not compiled in place (python setup.py build_ext --inplace): pure Python only")
        results = measure(args, builds)
    (OUT / "parse.json").write_text(json.dumps(results, indent=2) + "\n")


def measure(args: argparse.Namespace, builds: dict[str, pathlib.Path]) -> dict[str, object]:
    """Run every measurement; ``builds`` maps a build's name to the directory it is imported from
    (the first is the one measured at both sizes)."""
    default_build = next(iter(builds))

    def auditfwd(build: str, log: pathlib.Path) -> list[str]:
        # -P: the package comes from PYTHONPATH, never from the working directory.
        return ["env", f"PYTHONPATH={builds[build]}", sys.executable, "-P", "-m", "forwarder", "parse",
                "--no-progress", "--host-name", "bench", str(log)]

    results: dict[str, object] = {"builds": list(builds)}
    for label, size in (("large", args.records), ("small", args.small)):
        log = args.workdir / f"bench-{size}.log"
        records, execve = generate(log, size, args.seed)
        print(f"[{label}] {log.name}: {records:,} records, {execve:,} execve events, "
              f"{log.stat().st_size / 2**20:.0f} MiB", flush=True)
        measured = builds if label == "large" else {default_build: builds[default_build]}
        ours = {build: best_of(args.repeat, f"auditfwd parse ({build})", auditfwd(build, log), records)
                for build in measured}
        entry: dict[str, object] = {"records": records, "execve_events": execve}
        for build, measurement in ours.items():
            entry[f"auditfwd_{build}"] = asdict(measurement)
            entry[f"auditfwd_{build}_cpu_seconds_per_1000_execve"] = (
                measurement.cpu_seconds / execve * 1000 if execve else None
            )
        if label == "large":
            csv = best_of(args.repeat, "ausearch --format csv",
                          ["ausearch", "--input", str(log), "--format", "csv"], records)
            raw = best_of(args.repeat, "ausearch --raw", ["ausearch", "--input", str(log), "--raw"], records)
            entry["ausearch_csv"] = asdict(csv)
            entry["ausearch_raw"] = asdict(raw)
            for m in (*ours.values(), csv, raw):
                print(f"  {m.tool:30s} {m.seconds:7.2f} s  {m.records_per_second:>10,.0f} records/s  "
                      f"cpu {m.cpu_seconds:6.2f} s  peak RSS {m.peak_rss_mib:6.1f} MiB")
            for build, measurement in ours.items():
                for peer, peer_name in ((csv, "csv"), (raw, "raw")):
                    ratio = measurement.records_per_second / peer.records_per_second
                    entry[f"ratio_{build}_vs_ausearch_{peer_name}"] = ratio
                    print(f"  ratio auditfwd ({build}) / {peer.tool}: {ratio:.2f}")
        else:
            for m in ours.values():
                print(f"  {m.tool:30s} {m.seconds:7.2f} s  peak RSS {m.peak_rss_mib:6.1f} MiB")
        for build in measured:
            print(f"  auditfwd ({build}) CPU seconds per 1,000 execve events: "
                  f"{entry[f'auditfwd_{build}_cpu_seconds_per_1000_execve']:.3f}")
        results[label] = entry
        log.unlink()
    large, small = results["large"], results["small"]
    assert isinstance(large, dict) and isinstance(small, dict)
    key = f"auditfwd_{default_build}"
    rss_ratio = large[key]["peak_rss_mib"] / small[key]["peak_rss_mib"]
    results["peak_rss_ratio_large_vs_small"] = rss_ratio
    print(f"peak RSS large/small input ({default_build}): {rss_ratio:.2f} (1.0 = independent of input size)")
    return results


if __name__ == "__main__":
    main()
