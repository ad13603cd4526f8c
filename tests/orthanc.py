"""A real Orthanc server with its DICOMweb plugin, started on a free loopback port for the tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
USER, PASSWORD = "hounsfield", "test-password"
AET = "ORTHANC"  # Orthanc's own AE title
OUR_AET = "HOUNSFIELD"  # the app's, known to Orthanc (DicomModalities) with the C-MOVE port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_orthanc() -> tuple[str | None, str | None]:
    binary = shutil.which("Orthanc") or (("/usr/sbin/Orthanc") if Path("/usr/sbin/Orthanc").exists() else None)
    plugin = None
    for d in PLUGIN_DIRS:
        found = sorted(Path(d).glob("libOrthancDicomWeb.so*")) if Path(d).exists() else []
        if found:
            plugin = str(found[0])
            break
    return binary, plugin


@dataclass
class OrthancServer:
    root: str
    process: subprocess.Popen
    workdir: tempfile.TemporaryDirectory
    dicom_port: int = 0
    move_port: int = 0  # where Orthanc sends C-MOVE's instances for OUR_AET

    @property
    def dicomweb(self) -> str:
        return f"{self.root}/dicom-web"

    def store(self, files: list[tuple[str, bytes]]) -> None:
        for _, data in files:
            r = requests.post(f"{self.root}/instances", data=data, auth=(USER, PASSWORD), timeout=30)
            r.raise_for_status()

    def clear(self) -> None:
        for study in requests.get(f"{self.root}/studies", auth=(USER, PASSWORD), timeout=10).json():
            requests.delete(f"{self.root}/studies/{study}", auth=(USER, PASSWORD), timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.workdir.cleanup()


# Said when Orthanc is missing outside CI: how to get the PACS tests.
HOW_TO_GET = ("Orthanc is not installed, so the PACS tests (DICOMweb and DIMSE against a real archive) are "
              "skipped. To run them, install Debian's or Ubuntu's packages: sudo apt-get install orthanc "
              "orthanc-dicomweb (or run scripts/test.sh as root, which does it). CI runs them all.")


def in_ci() -> bool:
    """True in continuous integration (CI=true), where every test must run: nothing is skipped there."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def start_orthanc() -> OrthancServer:
    """Start Orthanc; where it is not installed, skip the tests that need it with :data:`HOW_TO_GET`,
    except in CI, where that is an error."""
    binary, plugin = find_orthanc()
    if (binary is None or plugin is None) and not in_ci():
        pytest.skip(HOW_TO_GET)
    if binary is None or plugin is None:
        raise RuntimeError("Orthanc and its DICOMweb plugin are not installed: run scripts/test.sh, which installs "
                           "Debian's orthanc and orthanc-dicomweb")
    work = tempfile.TemporaryDirectory(prefix="hounsfield-orthanc-")
    port, dicom_port, move_port = _free_port(), _free_port(), _free_port()
    config = {
        "Name": "HounsfieldTest",
        "StorageDirectory": f"{work.name}/storage",
        "IndexDirectory": f"{work.name}/index",
        "HttpPort": port,
        "DicomPort": dicom_port,
        "DicomServerEnabled": True,
        "DicomAet": AET,
        "DicomCheckCalledAet": True,  # a wrong called AE title is rejected, as by most archives
        "DicomAlwaysAllowEcho": False,  # only modalities it knows, for echo too
        "DicomAlwaysAllowStore": False,
        "DicomModalities": {"hounsfield": [OUR_AET, "127.0.0.1", move_port]},
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "StableAge": 1,
    }
    cfg = Path(work.name) / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(Path(work.name) / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=work.name)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (Path(work.name) / "orthanc.log").read_text(errors="replace")
            raise RuntimeError("Orthanc exited early:\n" + log[-3000:])
        try:
            if requests.get(f"{root}/system", auth=(USER, PASSWORD), timeout=2).status_code == 200:
                return OrthancServer(root, proc, work, dicom_port=dicom_port, move_port=move_port)
        except requests.exceptions.ConnectionError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("Orthanc did not answer within 60 s")
