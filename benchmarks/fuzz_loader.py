"""Fuzz `core.load_series` with seeded, structure-aware mutations of valid files (issue 14).

    python benchmarks/fuzz_loader.py                      # 20,000 cases, seed 1
    python benchmarks/fuzz_loader.py --cases 2000 --seed 7 --save /tmp/fuzz-repro

Cases run in a worker process (forked, address space capped), so that a case that hangs or
kills its process is a finding too, not the end of the run. Prints cases/s and the findings
grouped by kind, each with its count and one minimal reproducing case (seed, index, mutation).
``--save DIR`` writes, per kind, the reproducing file, the good file it was loaded with and a
``repro.py``. The mutation engine is ``tests/fuzzing.py``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzzing import MAX_PEAK_BYTES, SLOW_SECONDS, check_case, good_file, make_case, seeds

HANG_SECONDS = 60.0  # a case still running after this is killed and reported as a hang
ADDRESS_SPACE = 5 * 1024**3  # the worker's cap: a runaway allocation fails there, not on the shared host


def _worker(conn, seed: int, slow: float, max_peak: int) -> None:
    import logging
    import resource

    logging.disable(logging.CRITICAL)  # pydicom logs every oddity it meets; the fuzzer looks at results only
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # decoders written in Rust print their panics there: they are findings, not output
    try:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ValueError, OSError):
        pass
    while True:
        job = conn.recv()
        if job is None:
            return
        for index in range(*job):
            conn.send(("start", index))
            case = make_case(seed, index)
            found = [(f.kind, f.detail) for f in check_case(case, slow_seconds=slow, max_peak=max_peak)]
            conn.send(("done", index, found, case.seed_label, case.mutator, case.description, len(case.data)))
        conn.send(("chunk", job))


class Runner:
    """One worker process at a time, restarted after a hang or a crash."""

    def __init__(self, seed: int, slow: float, max_peak: int) -> None:
        self.ctx = mp.get_context("fork")
        self.args = (seed, slow, max_peak)
        self.proc = None
        self.conn = None

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()


def run(seed: int, start: int, cases: int, *, chunk: int = 250, slow: float = SLOW_SECONDS,
        max_peak: int = MAX_PEAK_BYTES, hang: float = HANG_SECONDS, progress: bool = True):
    """Run cases ``start .. start + cases``; returns (findings by kind, per-case results, seconds)."""
    seeds()
    good_file()  # built before forking: every worker starts with them
    runner = Runner(seed, slow, max_peak)
    runner.start()
    kinds: dict[str, list[tuple]] = defaultdict(list)
    done = 0
    t0 = time.perf_counter()
    next_index = start
    end = start + cases
    last_report = t0
    while next_index < end:
        job = (next_index, min(next_index + chunk, end))
        runner.conn.send(job)
        current = None
        while True:
            if not runner.conn.poll(hang):
                kinds[f"hang: a case ran over {hang:g} s and was killed"].append(
                    (current, "", "", "", 0, seed))
                runner.kill()
                runner.start()
                next_index = current + 1
                break
            try:
                msg = runner.conn.recv()
            except EOFError:
                runner.proc.join()
                code = runner.proc.exitcode
                kinds[f"crash: the worker process died (exit code {code})"].append((current, "", "", "", 0, seed))
                runner.kill()
                runner.start()
                next_index = (current if current is not None else job[0]) + 1
                break
            if msg[0] == "start":
                current = msg[1]
            elif msg[0] == "done":
                _, index, found, label, mutator, description, size = msg
                done += 1
                for kind, detail in found:
                    kinds[kind].append((index, label, mutator, description, size, seed, detail))
            elif msg[0] == "chunk":
                next_index = job[1]
                break
        now = time.perf_counter()
        if progress and now - last_report > 10:
            last_report = now
            print(f"  {next_index - start:>6} cases, {(next_index - start) / (now - t0):.0f}/s, "
                  f"{len(kinds)} kinds of finding so far", file=sys.stderr, flush=True)
    runner.stop()
    return kinds, done, time.perf_counter() - t0


def minimal(entries: list[tuple]) -> tuple:
    """The simplest reproducer of a kind: the smallest file, then the shortest mutation description."""
    return min(entries, key=lambda e: (e[4] or 0, len(e[3] or ""), e[0] if e[0] is not None else 0))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def save(kinds: dict[str, list[tuple]], folder: Path) -> None:
    (good_name, good_data), _ = good_file()
    folder.mkdir(parents=True, exist_ok=True)
    for n, (kind, entries) in enumerate(sorted(kinds.items(), key=lambda kv: -len(kv[1]))):
        index, *_rest = minimal(entries)
        seed = entries[0][5]
        if index is None:
            continue
        case = make_case(seed, index)
        sub = folder / f"{n + 1:02d}-{_slug(kind)}"
        sub.mkdir(exist_ok=True)
        (sub / case.name).write_bytes(case.data)
        (sub / good_name).write_bytes(good_data)
        (sub / "repro.py").write_text(
            f'"""{kind}\n\nseed {seed}, case {index} ({case.seed_label}, {case.mutator}): {case.description}\n"""\n'
            "from pathlib import Path\n\nfrom core import load_series\n\n"
            "here = Path(__file__).parent\n"
            f"result = load_series([here / {case.name!r}, here / {good_name!r}])\n"
            "print([v.source_names for v in result.volumes])\nfor name, reason in result.skipped:\n"
            "    print(name, '->', reason)\n", encoding="utf-8")


def report(kinds: dict[str, list[tuple]], done: int, seconds: float, seed: int) -> str:
    lines = [f"{done} cases in {seconds:.1f} s: {done / seconds:.1f} cases/s (seed {seed}, one worker)",
             f"{sum(len(v) for v in kinds.values())} findings of {len(kinds)} kinds"]
    for kind, entries in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        index, label, mutator, description, _, s, *detail = minimal(entries)
        cases = len({e[0] for e in entries})
        lines.append(f"\n[{len(entries)} in {cases} cases] {kind}")
        if index is not None:
            lines.append(f"    reproduce: make_case({s}, {index})  # {label}, {mutator}: {description}")
        else:
            lines.append("    (no case index: the worker died before reporting one)")
        if detail and detail[0]:
            lines.append(f"    e.g. {detail[0][:240]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20_000, help="number of cases (default 20,000)")
    ap.add_argument("--seed", type=int, default=1, help="the run's seed (default 1)")
    ap.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    ap.add_argument("--save", type=Path, help="write one reproducing case per kind of finding to this folder")
    ap.add_argument("--slow", type=float, default=SLOW_SECONDS, help="a case slower than this (s) is a finding")
    ap.add_argument("--max-peak-gb", type=float, default=MAX_PEAK_BYTES / 1024**3,
                    help="a case whose peak memory grows more than this (GiB) is a finding")
    ap.add_argument("--hang", type=float, default=HANG_SECONDS, help="kill a case after this many seconds")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    kinds, done, seconds = run(args.seed, args.start, args.cases, slow=args.slow,
                               max_peak=int(args.max_peak_gb * 1024**3), hang=args.hang)
    print(report(kinds, done, seconds, args.seed))
    if args.save:
        save(kinds, args.save)
        print(f"\nreproducing files written to {args.save}")
    return 1 if kinds else 0


if __name__ == "__main__":
    sys.exit(main())
