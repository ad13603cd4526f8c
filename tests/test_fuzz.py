"""A fixed sample of the loader fuzzer (tests/fuzzing.py): each seeded mutation of a valid file,
loaded beside a good file, must cost one explained line at most: no exception escapes, every
input is accounted for, the good file loads, and every reason is words (no exception class
names, raw bytes, control characters or long echoed values). The long run is
benchmarks/fuzz_loader.py."""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

from core import load_series
from tests.fuzzing import (
    BOMB_AT,
    BOMB_EVERY,
    MUTATORS,
    address_space_cap,
    check_case,
    exception_names,
    good_file,
    make_case,
    reason_problems,
    seeds,
)

SEED = 14  # issue 14
CASES = 1500  # 100 per mutation family (15 entries in MUTATORS): about 10 s on the shared machine


@pytest.fixture
def quiet_pydicom():
    """pydicom logs every oddity of every mutated file; only the results matter here."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def _summary(findings) -> str:
    kinds = defaultdict(list)
    for f in findings:
        kinds[f.kind].append(f)
    lines = [f"{len(findings)} findings of {len(kinds)} kinds:"]
    for kind, group in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        first = min(group, key=lambda f: len(f.case.data))
        c = first.case
        lines.append(f"- [{len(group)}] {kind}\n    {c.reproduce}: {c.seed_label}, {c.description}\n"
                     f"    {first.detail[:200]}")
    return "\n".join(lines)


@pytest.mark.parametrize("family", sorted({name for name, _ in MUTATORS}))
def test_fuzz_sample(family, quiet_pydicom):
    indices = [i for i in range(CASES) if MUTATORS[i % len(MUTATORS)][0] == family and i % BOMB_EVERY != BOMB_AT]
    with address_space_cap():
        findings = [f for i in indices for f in check_case(make_case(SEED, i))]
    assert not findings, _summary(findings)


def test_a_small_deflated_file_asking_for_much_memory(quiet_pydicom):
    """One of the cases the fuzzer makes one in a thousand: 405 KiB that inflate to 400 MiB.
    (The long run also has JPEG 2000 codestreams declaring 8100 x 8100 and zips of these.)"""
    with address_space_cap():
        findings = check_case(make_case(SEED, BOMB_AT))
    assert not findings, _summary(findings)


class TestTheFuzzerItself:
    def test_every_seed_loads_whole(self):
        for label, seed in seeds().items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = load_series([(label, seed.data)])
            if label == "pydicom:rtplan.dcm":
                assert result.skipped and not result.volumes  # a plan: no pixels, explained
            else:
                assert result.volumes and not result.skipped, (label, result.skipped)

    def test_cases_are_a_pure_function_of_seed_and_index(self):
        for i in (0, 1, 13, 14, 500):
            a, b = make_case(SEED, i), make_case(SEED, i)
            assert a.data == b.data and a.description == b.description
        assert make_case(SEED, 3).data != make_case(SEED + 1, 3).data

    def test_seeds_are_the_same_bytes_in_every_process(self):
        """Else a case's index would not reproduce it elsewhere (pydicom's compress makes new UIDs)."""
        import hashlib
        import subprocess
        import sys

        code = ("import hashlib; from tests.fuzzing import seeds; "
                "print(hashlib.sha256(b''.join(s.data for s in seeds().values())).hexdigest())")
        root = str(Path(__file__).resolve().parents[1])
        other = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()
        assert other == hashlib.sha256(b"".join(s.data for s in seeds().values())).hexdigest()

    def test_the_sample_mutates_every_seed_with_every_family(self):
        pairs = {(make_case(SEED, i).seed_label, make_case(SEED, i).mutator) for i in range(CASES)}
        assert len({label for label, _ in pairs}) == len(seeds())
        assert len({m for _, m in pairs}) >= len({name for name, _ in MUTATORS})

    def test_the_good_file_loads_alone(self):
        (name, data), voxels = good_file()
        vol = load_series([(name, data)]).volumes[0]
        assert (vol.voxels == voxels).all()

    def test_exception_names_come_from_every_library(self):
        names = exception_names()
        assert {"ValueError", "InvalidDicomError", "BytesLengthException", "BadZipFile", "error"} <= names

    @pytest.mark.parametrize("reason,kinds", [
        ("truncated: the file ends before its (7FE0,0010) Pixel Data", []),
        ("could not be read as DICOM (TypeError); the file may be damaged", ["exception class name in reason"]),
        ("pixel data could not be decoded (error)", ["exception class name in reason"]),
        ("the decoder reported an error: the data ends early", []),
        ("BadZipFile: bad CRC", ["exception class name in reason"]),
        ("error: bad CRC", ["exception class name in reason"]),
        ("unexpected VR b'\\x00\\x02' for (7FE0,0010)", ["bytes repr in reason"]),
        ("invalid: (7FE0,0010) Pixel Data has the value representation 'ob', not OB or OW", []),
        ("a colour image (\x1b[31m)", ["non-printable character in reason"]),
        ("unknown UID '" + "1." * 40 + "'", ["quoted value longer than 64 characters"]),
        ("unknown UID '" + "1." * 32 + "…'", []),
        ("the patient's and the series' description", []),
        ("", ["reason is empty"]),
    ])
    def test_reason_checks(self, reason, kinds):
        assert [k for k, _ in reason_problems(reason)] == kinds
