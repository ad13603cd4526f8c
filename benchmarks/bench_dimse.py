"""One series retrieved over loopback from a real Orthanc: DIMSE C-GET against DICOMweb WADO-RS, side by side.

Run:  python benchmarks/bench_dimse.py [--slices 300] [--size 512] [--rounds 3]

Orthanc (Debian's, with its DICOMweb plugin, as the tests start it) holds one CT series of
``slices`` images of ``size`` x ``size`` int16. Each round retrieves it into memory with
``core.dimse.get_series`` (C-GET, one association), ``core.dimse.move_series`` (C-MOVE to the
app's short-lived storage SCP) and ``core.pacs.retrieve_series`` (one multipart WADO-RS answer),
rotating which goes first, and checks each gave every image.
Printed: the median seconds and MB/s of the images' bytes, and each round's times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom.uid import generate_uid

from core.dimse import DimsePeer, get_series, move_series
from core.memory import MB, MemoryBudget, set_server_budget
from core.outbound import AddressPolicy
from core.pacs import PacsConnection, PacsLimits, retrieve_series
from tests.factory import ct_series, ramp_volume
from tests.orthanc import AET, OUR_AET, PASSWORD, USER, start_orthanc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    set_server_budget(MemoryBudget(total_bytes=4096 * MB, session_bytes=4096 * MB))
    local, limits = AddressPolicy(allow_private=True), PacsLimits(retrieve_seconds=600, series_bytes=2048 * MB)
    server = start_orthanc()
    try:
        study, series = generate_uid(), generate_uid()
        files = ct_series(ramp_volume((args.slices, args.size, args.size), seed=1), series_uid=series,
                          extra={"StudyInstanceUID": study})
        nbytes = sum(len(d) for _, d in files)
        start = time.perf_counter()
        server.store(files)
        print(f"Orthanc {server.root}: stored {len(files)} images, {nbytes / MB:.1f} MB, in "
              f"{time.perf_counter() - start:.1f} s")
        del files
        peer = DimsePeer("127.0.0.1", server.dicom_port, AET, our_ae_title=OUR_AET, policy=local, limits=limits)
        conn = PacsConnection(server.dicomweb, username=USER, password=PASSWORD, policy=local, limits=limits,
                              configured=True)
        ways = {"DIMSE C-GET": lambda: get_series(peer, study, series, owner="bench"),
                "DIMSE C-MOVE": lambda: move_series(peer, study, series, port=server.move_port, bind="127.0.0.1",
                                                    owner="bench"),
                "DICOMweb WADO-RS": lambda: retrieve_series(conn, study, series, owner="bench")}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for r in range(args.rounds):
            order = list(ways)[r % len(ways):] + list(ways)[:r % len(ways)]
            for name in order:
                start = time.perf_counter()
                got = ways[name]()
                seconds = time.perf_counter() - start
                assert len(got) == args.slices, (name, len(got))
                got_bytes = sum(len(d) for _, d in got)
                got.release()
                del got
                times[name].append(seconds)
                print(f"round {r + 1}: {name:17s} {seconds:6.2f} s  {got_bytes / MB / seconds:7.1f} MB/s")
        print(f"\n{args.slices} images of {args.size} x {args.size} ({nbytes / MB:.1f} MB), median of {args.rounds}:")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:17s} {med:6.2f} s  {nbytes / MB / med:7.1f} MB/s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
