"""DIMSE against a real Orthanc on loopback (its DICOM port, the app's AE title in its DicomModalities), no mocks."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from core import load_series
from core.deid import deidentify, series_datasets
from core.dimse import (
    DimseError,
    DimsePeer,
    _reject_message,
    echo,
    find_series,
    find_studies,
    get_series,
    move_series,
    store_datasets,
)
from core.memory import MemoryBudget, server_budget, set_server_budget
from core.outbound import AddressPolicy
from core.pacs import PacsLimits
from dashboard import hosting
from tests.factory import ct_series, ramp_volume
from tests.orthanc import AET, OUR_AET, start_orthanc

HU = ramp_volume((6, 32, 24), seed=7)
STUDY, SERIES = "1.2.826.0.1.7", "1.2.826.0.1.7.1"
LOCAL = AddressPolicy(allow_private=True)  # Orthanc is on loopback: allowed as a local user would
MB = 1024**2


@pytest.fixture(scope="module")
def pacs(orthanc):
    orthanc.clear()
    orthanc.store(ct_series(HU, series_uid=SERIES, patient_name="PACS^ALICE",
                            extra={"StudyDate": "20240201", "AccessionNumber": "ACC-1", "StudyInstanceUID": STUDY}))
    orthanc.store(ct_series(ramp_volume((3, 8, 8), seed=8), series_uid="1.2.826.0.2.7.1", patient_name="OTHER^BOB",
                            modality="MR", intercept=0.0,
                            extra={"StudyDate": "20230505", "AccessionNumber": "ACC-2",
                                   "StudyInstanceUID": "1.2.826.0.2.7"}))
    return orthanc


def _peer(server, **kw) -> DimsePeer:
    kw.setdefault("policy", LOCAL)
    kw.setdefault("timeout", 5.0)
    return DimsePeer("127.0.0.1", kw.pop("port", server.dicom_port), kw.pop("ae_title", AET),
                     our_ae_title=kw.pop("our_ae_title", OUR_AET), **kw)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestEcho:
    def test_answers(self, pacs):
        assert 0 < echo(_peer(pacs)) < 5

    def test_refused(self):
        port = _closed_port()
        with pytest.raises(DimseError, match=rf"ORTHANC@127.0.0.1:{port} refused the connection: nothing listens"):
            echo(DimsePeer("127.0.0.1", port, AET, policy=LOCAL, timeout=5))

    def test_timed_out(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts the connection; nobody ever answers the association request
        try:
            with pytest.raises(DimseError, match="did not answer the association request within 1 s"):
                echo(DimsePeer("127.0.0.1", listener.getsockname()[1], AET, policy=LOCAL, timeout=1))
        finally:
            listener.close()

    def test_aborted(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def hang_up():
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()  # reads the association request, then hangs up

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        try:
            with pytest.raises(DimseError, match="did not complete the association"):
                echo(DimsePeer("127.0.0.1", listener.getsockname()[1], AET, policy=LOCAL, timeout=5))
        finally:
            thread.join(10)
            listener.close()

    @staticmethod
    def _rejections(peer, expected: str) -> list[str]:
        """Echo up to three times until the rejection is read. Orthanc closes the socket right after
        its A-ASSOCIATE-RJ, and now and then pynetdicom sees the close first (an abort): that answer
        must still point at the AE title, and the rejection itself must come through."""
        messages = []
        for _ in range(3):
            with pytest.raises(DimseError) as caught:
                echo(peer)
            messages.append(str(caught.value))
            if expected in messages[-1]:
                break
        assert expected in messages[-1], messages
        assert all(expected in m or "closed the connection (aborted)" in m and "AE title" in m for m in messages)
        return messages

    def test_called_ae_title_not_recognised(self, pacs):
        self._rejections(_peer(pacs, ae_title="NOT-ORTHANC"),
                         "rejected the association permanently: called AE title not recognised")

    def test_calling_ae_title_not_recognised(self, pacs):
        self._rejections(_peer(pacs, our_ae_title="STRANGER"),
                         "rejected the association permanently: calling AE title not recognised; the peer does not "
                         "know our AE title")

    def test_no_reason_given(self):
        from pynetdicom.pdu_primitives import A_ASSOCIATE

        rj = A_ASSOCIATE()
        rj.result, rj.result_source, rj.diagnostic = 0x02, 0x01, 0x01
        assert _reject_message(DimsePeer("h", 104, "X"), rj) == (
            "X@h:104 rejected the association for now: no reason given; try again later, or ask the peer's "
            "administrator.")

    @pytest.mark.parametrize("host,category", [("127.0.0.1", "loopback"), ("localhost", "loopback"),
                                               ("10.1.2.3", "private"), ("169.254.169.254", "cloud metadata")])
    def test_refused_addresses_before_any_connection(self, host, category):
        with pytest.raises(DimseError, match=f"is a {category} address"):
            echo(DimsePeer(host, 104, AET, timeout=2))  # the shared host's policy: public addresses only

    def test_metadata_stays_refused_on_a_local_install(self):
        with pytest.raises(DimseError, match="cloud metadata"):
            echo(DimsePeer("169.254.169.254", 104, AET, policy=LOCAL, timeout=2))

    @pytest.mark.parametrize("kw,match", [
        (dict(host="pacs.example.org/x"), "is not a host name"),
        (dict(host="user@pacs"), "is not a host name"),
        (dict(port=70000), "is not a TCP port"),
        (dict(ae_title="A" * 17), "peer's AE title"),
        (dict(ae_title="BACK\\SLASH"), "peer's AE title"),
        (dict(our_ae_title="   "), "our AE title"),
    ])
    def test_invalid_fields(self, kw, match):
        fields = dict(host="127.0.0.1", port=104, ae_title=AET, policy=LOCAL) | kw
        with pytest.raises(DimseError, match=match):
            echo(DimsePeer(**fields))

    def test_the_calling_ae_title_is_not_in_the_repr(self):
        assert "SECRET-AET" not in repr(DimsePeer("h", 104, "X", our_ae_title="SECRET-AET"))


class TestFind:
    def test_by_name_prefix(self, pacs):
        rows = find_studies(_peer(pacs), patient_name="PACS")
        assert [r["PatientName"] for r in rows] == ["PACS^ALICE"] and not rows.more
        assert rows[0]["NumberOfStudyRelatedInstances"] == 6 and rows[0]["StudyDate"] == "20240201"
        assert rows[0]["StudyInstanceUID"] == STUDY

    @pytest.mark.parametrize("kw,expected", [
        (dict(patient_name="*BOB"), {"OTHER^BOB"}),
        (dict(patient_name="PACS^AL?CE"), {"PACS^ALICE"}),
        (dict(patient_id="ID-0001"), {"PACS^ALICE", "OTHER^BOB"}),
        (dict(date_from="20240101", date_to="20241231"), {"PACS^ALICE"}),
        (dict(date_from="20230505", date_to="20230505"), {"OTHER^BOB"}),
        (dict(modality="MR"), {"OTHER^BOB"}),
        (dict(accession="ACC-2"), {"OTHER^BOB"}),
        (dict(patient_name="NOBODY"), set()),
    ])
    def test_filters(self, pacs, kw, expected):
        assert {r["PatientName"] for r in find_studies(_peer(pacs), **kw)} == expected

    def test_series_of_a_study(self, pacs):
        series = find_series(_peer(pacs), STUDY)
        assert [(s["Modality"], s["NumberOfSeriesRelatedInstances"], s["SeriesInstanceUID"]) for s in series] == \
            [("CT", 6, SERIES)]

    def test_stops_past_the_limit_and_says_so(self, pacs):
        rows = find_studies(_peer(pacs), limit=1)
        assert len(rows) == 1 and rows.more and rows.limit == 1
        assert len(find_studies(_peer(pacs), limit=2)) == 2  # the association after an early stop is clean

    def test_a_uid_that_is_not_one(self, pacs):
        with pytest.raises(DimseError, match="is not a DICOM UID"):
            find_series(_peer(pacs), "1.2.3*")


class TestGet:
    def test_voxels_equal_the_stored_ones(self, pacs):
        calls = []
        files = get_series(_peer(pacs), STUDY, SERIES, progress=lambda *c: calls.append(c), owner="dimse-get")
        try:
            assert len(files) == 6 and calls[-1] == (6, 0, 0)
            assert server_budget().used("dimse-get") >= sum(len(d) for _, d in files)
            vol = load_series(files).volumes[0]
            np.testing.assert_array_equal(vol.voxels, HU)
            assert vol.series_uid == SERIES
        finally:
            files.release()
        assert server_budget().used("dimse-get") == 0

    def test_over_the_memory_budget_before_the_rest_arrives(self, pacs):
        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=64 * MB, session_bytes=40 * MB))
        try:
            # 6 images of 1.5 KB announced as 40 000: refused from the first one's size
            with pytest.raises(DimseError, match=r"stopped after 0 images: refused: the images of this series as "
                                                 r"they arrive would need \d+ MB, and this session may hold at most "
                                                 r"40 MB"):
                get_series(_peer(pacs), STUDY, SERIES, expected=40_000, owner="visitor")
            assert server_budget().used() == 0
        finally:
            set_server_budget(before)

    def test_over_the_budget_from_the_count_the_peer_announces(self, orthanc_big):
        server, study, series = orthanc_big  # 24 images of 512 KB, announced in the first pending response
        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=64 * MB, session_bytes=10 * MB))
        try:
            # the first image fits (one 8 MB step); 24 of its size do not: stopped before the rest arrive
            with pytest.raises(DimseError, match=r"stopped after 1 images: refused: .* this session may hold at "
                                                 r"most 10 MB"):
                get_series(_peer(server), study, series, owner="visitor")  # no count given by the caller
            assert server_budget().used() == 0
        finally:
            set_server_budget(before)

    def test_more_images_than_announced(self, pacs):
        with pytest.raises(DimseError, match="stopped after 3 images: the peer sent more than the 3 images it "
                                             "announced"):
            get_series(_peer(pacs), STUDY, SERIES, expected=3, owner="visitor")
        assert server_budget().used("visitor") == 0

    def test_an_image_over_its_cap(self, orthanc_big):
        server, study, series = orthanc_big
        peer = _peer(server, limits=PacsLimits(instance_bytes=64 * 1024))
        with pytest.raises(DimseError, match="stopped after 0 images: one image is larger than 0.0625 MB"):
            get_series(peer, study, series, owner="visitor")
        assert server_budget().used("visitor") == 0

    def test_a_series_over_its_cap(self, orthanc_big):
        server, study, series = orthanc_big
        peer = _peer(server, limits=PacsLimits(series_bytes=1 * MB))
        with pytest.raises(DimseError, match="the series is larger than 1 MB, the most this app reads"):
            get_series(peer, study, series, owner="visitor")
        assert server_budget().used("visitor") == 0

    def test_the_peer_stopped_mid_transfer(self, orthanc_big):
        server, study, series = orthanc_big

        def stop_the_peer(done, remaining, failed):
            if done == 2:
                server.process.kill()

        with pytest.raises(DimseError, match="aborted the association during C-GET after [2-9] images"):
            get_series(_peer(server), study, series, progress=stop_the_peer, owner="visitor")
        assert server_budget().used("visitor") == 0

    def test_over_the_total_time(self, pacs):
        with pytest.raises(DimseError, match="did not finish C-GET .* within 0.01 s"):
            get_series(_peer(pacs, limits=PacsLimits(retrieve_seconds=0.01)), STUDY, SERIES, owner="visitor")
        assert server_budget().used("visitor") == 0


@pytest.fixture(scope="module")
def orthanc_big():
    """Its own Orthanc (a test stops it) holding 24 images of 512 x 512 (512 KB each)."""
    server = start_orthanc()
    try:
        study, series = generate_uid(), generate_uid()
        server.store(ct_series(ramp_volume((24, 512, 512), seed=3), series_uid=series,
                               extra={"StudyInstanceUID": study}))
        yield server, study, series
    finally:
        server.stop()


class TestMove:
    def test_voxels_equal_the_stored_ones(self, pacs):
        calls = []
        files = move_series(_peer(pacs), STUDY, SERIES, port=pacs.move_port, bind="127.0.0.1",
                            progress=lambda *c: calls.append(c), owner="dimse-move")
        try:
            assert len(files) == 6 and calls[-1] == (6, 0, 0)
            np.testing.assert_array_equal(load_series(files).volumes[0].voxels, HU)
        finally:
            files.release()
        assert server_budget().used("dimse-move") == 0

    def test_the_port_is_busy(self, pacs):
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last test's SCP left TIME_WAIT
            taken.bind(("127.0.0.1", pacs.move_port))
            taken.listen(1)
            with pytest.raises(DimseError, match=f"Port {pacs.move_port} for receiving C-MOVE is busy"):
                move_series(_peer(pacs), STUDY, SERIES, port=pacs.move_port, bind="127.0.0.1")

    def test_the_receiving_scp_answers_the_peer_only(self):
        from pynetdicom import AE

        from core.dimse import _storage_scp

        server = _storage_scp(OUR_AET, "127.0.0.1", 0, from_address="127.0.0.1", handlers=[], timeout=5)
        try:
            port = server.server_address[1]
            results = {}
            for source in ("127.0.0.1", "127.0.0.2"):  # the peer, and another address on this machine
                ae = AE(ae_title="CALLER")
                ae.acse_timeout = 5
                ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")
                assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AET, bind_address=(source, 0))
                results[source] = assoc.is_established
                if assoc.is_established:
                    assoc.release()
            assert results == {"127.0.0.1": True, "127.0.0.2": False}
        finally:
            server.shutdown()

    def test_the_receiving_scp_refuses_a_huge_pdu(self):
        import struct

        from core.dimse import _storage_scp

        server = _storage_scp(OUR_AET, "127.0.0.1", 0, from_address="127.0.0.1", handlers=[], timeout=5)
        sent = 0
        try:
            with socket.create_connection(server.server_address[:2], timeout=10) as conn:
                conn.sendall(struct.pack(">BBL", 0x01, 0, 1024**3))  # an A-ASSOCIATE-RQ claiming 1 GB
                with pytest.raises(OSError):  # reset or broken pipe: the SCP closed the connection
                    while sent < 1024**3:
                        conn.sendall(b"\0" * 65536)
                        sent += 65536
        finally:
            server.shutdown()
        assert sent < 64 * MB

    def test_a_destination_the_peer_does_not_know(self, pacs):
        # Orthanc knows HOUNSFIELD as a caller, and sends C-MOVE to it only: another port gets nothing
        with pytest.raises(DimseError, match="stopped|aborted|ended C-MOVE|sent no image"):
            move_series(_peer(pacs, timeout=3), STUDY, SERIES, port=_closed_port(), bind="127.0.0.1",
                        owner="visitor")
        assert server_budget().used("visitor") == 0


class TestStore:
    def test_a_deidentified_export_is_found_again(self, pacs):
        files = get_series(_peer(pacs), STUDY, SERIES, owner="store")
        vol = load_series(files).volumes[0]
        files.release()
        datasets = series_datasets(vol)
        deidentify(datasets)
        new_study = str(datasets[0].StudyInstanceUID)
        assert new_study != STUDY
        done = []
        results = store_datasets(_peer(pacs), datasets, progress=lambda d, t: done.append((d, t)))
        assert [r.words for r in results] == ["stored"] * 6 and all(r.ok for r in results) and done[-1] == (6, 6)
        series = find_series(_peer(pacs), new_study)
        assert [s["NumberOfSeriesRelatedInstances"] for s in series] == [6]


class TestBounded:
    def test_a_huge_pdu(self):
        """A peer that answers the association request with a PDU claiming 1 GB, then streams it."""
        import struct
        import tracemalloc

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sent = [0]

        def flood():
            conn, _ = listener.accept()
            try:
                conn.recv(65536)
                conn.sendall(struct.pack(">BBL", 0x02, 0, 1024**3))
                chunk = b"\0" * 65536
                while sent[0] < 1024**3:
                    conn.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass  # the app closed the connection
            finally:
                conn.close()

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        tracemalloc.start()
        try:
            with pytest.raises(DimseError, match=r"sent one message part \(PDU\) of 1,024.0 MB, more than the 256 KB"):
                echo(DimsePeer("127.0.0.1", listener.getsockname()[1], AET, policy=LOCAL, timeout=5))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            thread.join(10)
            listener.close()
        assert peak < 16 * MB and sent[0] < 64 * MB


    @pytest.mark.filterwarnings("ignore:The value length:UserWarning")  # the peer's values are too long on purpose
    def test_a_search_answer_over_its_cap(self):
        """A real pynetdicom C-FIND SCP that answers with 1000 studies of 10 KB each."""
        from pydicom.dataset import Dataset
        from pynetdicom import AE, evt

        def matches(event):
            for n in range(1000):
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                ds.StudyInstanceUID = f"1.2.3.{n}"
                ds.StudyDescription = "x" * 10_000
                yield 0xFF00, ds

        scp = AE(ae_title="CHATTY")
        scp.add_supported_context("1.2.840.10008.5.1.4.1.2.2.1")
        server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, matches)])
        try:
            peer = DimsePeer("127.0.0.1", server.server_address[1], "CHATTY", policy=LOCAL, timeout=5,
                             limits=PacsLimits(answer_bytes=1 * MB))
            with pytest.raises(DimseError, match="answered with more than 1 MB, the most this app reads"):
                find_studies(peer, limit=5000)
            rows = find_studies(peer, limit=20)  # within the cap: stopped at the row limit instead
            assert len(rows) == 20 and rows.more
            assert all(len(r["StudyDescription"]) == 256 for r in rows)  # long values cut for the table
        finally:
            server.shutdown()


class TestStoreRefusals:
    def test_one_result_per_instance_when_the_peer_takes_only_some(self):
        import io

        import pydicom
        from pynetdicom import AE, evt

        stored = []
        scp = AE(ae_title="MR-ONLY")
        scp.add_supported_context("1.2.840.10008.5.1.4.1.1.4")  # MR Image Storage only
        server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_STORE, lambda event: stored.append(event.dataset.Modality) or 0x0000)])
        try:
            files = ct_series(ramp_volume((1, 8, 8), seed=1)) + ct_series(ramp_volume((1, 8, 8), seed=2),
                                                                          modality="MR", intercept=0.0)
            datasets = [pydicom.dcmread(io.BytesIO(data)) for _, data in files]
            results = store_datasets(DimsePeer("127.0.0.1", server.server_address[1], "MR-ONLY", policy=LOCAL,
                                               timeout=5), datasets)
            assert [r.ok for r in results] == [False, True] and stored == ["MR"]
            assert results[0].words.startswith("refused: the peer does not accept this kind of image")
        finally:
            server.shutdown()


class TestSettings:
    def test_defaults_are_the_shared_host_ones(self, monkeypatch):
        for name in hosting.SETTINGS:
            monkeypatch.delenv(f"HOUNSFIELD_{name.upper()}", raising=False)
        assert hosting.dimse_settings() == hosting.DimseSettings(enabled=True, typed_peers=False, move_port=None,
                                                                 move_bind="0.0.0.0", find_limit=500)

    @pytest.mark.parametrize("value,expected", [("11112", 11112), ("0", None), ("70000", None), ("abc", None)])
    def test_move_port(self, monkeypatch, value, expected):
        monkeypatch.setenv("HOUNSFIELD_DIMSE_MOVE_PORT", value)
        assert hosting.dimse_settings().move_port == expected


PAGE = Path(__file__).resolve().parents[1] / "pages" / "6_PACS.py"
SEARCH = "FormSubmitter:dimse_search-Search studies (C-FIND)"


def _page(monkeypatch, *, peers: dict | None = None, **env):
    from tests.helpers import page_test

    for name in hosting.SETTINGS:
        monkeypatch.delenv(f"HOUNSFIELD_{name.upper()}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"HOUNSFIELD_{name.upper()}", value)
    at = page_test(PAGE)
    if peers is not None:
        at.secrets["dimse"] = peers
    at.run()
    at.radio(key="pacs_kind").set_value("DIMSE (DICOM network)").run()
    assert not at.exception
    return at


class TestPage:
    def test_typed_peer_search_and_retrieve(self, pacs, monkeypatch):
        from tests.helpers import page_text as _page_text

        at = _page(monkeypatch, dimse_typed_peers="on", allow_private_networks="1")
        at.text_input(key="dimse_host").set_value("127.0.0.1")
        at.number_input(key="dimse_port").set_value(pacs.dicom_port)
        at.text_input(key="dimse_aet").set_value(AET).run()
        at.button(key="dimse_echo").click().run()
        assert any("answered C-ECHO" in s.value for s in at.success)
        at.text_input(key="dimse_name").set_value("PACS")
        at.button(key=SEARCH).click().run()
        assert not at.exception
        assert any("1 study found" in m.value for m in at.markdown)
        assert "PACS^ALICE" not in _page_text(at)  # PHI hidden by default
        at.button(key="dimse_retrieve").click().run()
        assert not at.exception
        assert any("Retrieved 6 images with C-GET" in s.value for s in at.success)
        np.testing.assert_array_equal(at.session_state["study"].volumes[0].voxels, HU)

    def test_a_configured_peer_only_by_default(self, pacs, monkeypatch):
        peers = {"archive": {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": AET, "our_ae_title": OUR_AET}}
        at = _page(monkeypatch, peers=peers, pacs_configured_access="everyone")
        assert at.selectbox(key="dimse_peer").options == ["archive"]
        assert not any(t.key == "dimse_host" for t in at.text_input)
        at.text_input(key="dimse_name").set_value("PACS")
        at.button(key=SEARCH).click().run()
        assert any("1 study found" in m.value for m in at.markdown)

    def test_nothing_offered_to_anonymous_visitors_by_default(self, pacs, monkeypatch):
        peers = {"archive": {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": AET}}
        at = _page(monkeypatch, peers=peers)
        assert any("does not connect to DIMSE peers" in i.value for i in at.info)
        assert str(pacs.dicom_port) not in "".join(c.value for c in at.caption)

    def test_a_typed_loopback_peer_is_refused_on_a_shared_host(self, pacs, monkeypatch):
        at = _page(monkeypatch, dimse_typed_peers="on")
        at.text_input(key="dimse_host").set_value("127.0.0.1")
        at.number_input(key="dimse_port").set_value(pacs.dicom_port)
        at.text_input(key="dimse_aet").set_value(AET).run()
        at.button(key="dimse_echo").click().run()
        assert at.error and "loopback" in at.error[0].value

    def test_send_the_current_series(self, pacs, monkeypatch):
        at = _page(monkeypatch, dimse_typed_peers="on", allow_private_networks="1")
        at.text_input(key="dimse_host").set_value("127.0.0.1")
        at.number_input(key="dimse_port").set_value(pacs.dicom_port)
        at.text_input(key="dimse_aet").set_value(AET).run()
        at.button(key="dimse_send").click().run()  # the built-in sample
        assert not at.exception
        assert at.success and "images stored by ORTHANC@127.0.0.1" in at.success[0].value

    def test_dimse_off(self, monkeypatch):
        from tests.helpers import page_test

        monkeypatch.setenv("HOUNSFIELD_DIMSE", "off")
        at = page_test(PAGE).run()
        assert not at.exception and [r.key for r in at.radio] == ["pacs_auth"]  # DICOMweb alone

    def test_retrieve_with_c_move(self, pacs, monkeypatch):
        at = _page(monkeypatch, dimse_typed_peers="on", allow_private_networks="1",
                   dimse_move_port=str(pacs.move_port), dimse_move_bind="127.0.0.1")
        at.text_input(key="dimse_host").set_value("127.0.0.1")
        at.number_input(key="dimse_port").set_value(pacs.dicom_port)
        at.text_input(key="dimse_aet").set_value(AET).run()
        at.text_input(key="dimse_name").set_value("PACS")
        at.button(key=SEARCH).click().run()
        at.radio(key="dimse_method").set_value("C-MOVE").run()
        at.button(key="dimse_retrieve").click().run()
        assert not at.exception
        assert any("Retrieved 6 images with C-MOVE" in s.value for s in at.success)
        np.testing.assert_array_equal(at.session_state["study"].volumes[0].voxels, HU)

    def test_c_move_is_not_offered_without_its_port(self, pacs, monkeypatch):
        at = _page(monkeypatch, dimse_typed_peers="on", allow_private_networks="1")
        at.text_input(key="dimse_host").set_value("127.0.0.1")
        at.number_input(key="dimse_port").set_value(pacs.dicom_port)
        at.text_input(key="dimse_aet").set_value(AET).run()
        at.button(key=SEARCH).click().run()
        assert at.radio(key="dimse_method").options == ["C-GET"]

    def test_results_are_not_sent_to_another_peer(self, pacs, monkeypatch):
        peers = {"archive": {"host": "127.0.0.1", "port": pacs.dicom_port, "ae_title": AET, "our_ae_title": OUR_AET}}
        at = _page(monkeypatch, peers=peers, pacs_configured_access="everyone", dimse_typed_peers="on",
                   allow_private_networks="1")
        at.button(key=SEARCH).click().run()
        assert at.selectbox(key="dimse_study_pick")
        at.selectbox(key="dimse_peer").set_value("Another peer (type it)").run()
        at.text_input(key="dimse_host").set_value("127.0.0.1")
        at.number_input(key="dimse_port").set_value(pacs.dicom_port)
        at.text_input(key="dimse_aet").set_value(AET).run()
        assert not at.exception and not at.dataframe  # the archive's study UIDs stay with the archive


class TestConfiguredAeTitles:
    """The calling AE title stored for a peer goes to that peer only (a real pynetdicom SCP records callers)."""

    def test_used_with_their_own_peer_only(self, monkeypatch):
        from pynetdicom import AE, evt

        callers = []
        scp = AE(ae_title="RECORDER")
        scp.add_supported_context("1.2.840.10008.1.1")
        server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_ECHO, lambda event: callers.append(event.assoc.requestor.ae_title) or 0x0000)])
        try:
            port = server.server_address[1]
            peers = {"recorder": {"host": "127.0.0.1", "port": port, "ae_title": "RECORDER",
                                  "our_ae_title": "OPERATOR-AET"}}
            at = _page(monkeypatch, peers=peers, pacs_configured_access="everyone", dimse_typed_peers="on",
                       allow_private_networks="1")
            at.button(key="dimse_echo").click().run()
            assert callers == ["OPERATOR-AET"]
            assert "OPERATOR-AET" not in "".join(str(e.value) for e in at.caption)
            at.selectbox(key="dimse_peer").set_value("Another peer (type it)").run()
            assert at.text_input(key="dimse_our_aet").value == "HOUNSFIELD"
            at.text_input(key="dimse_host").set_value("127.0.0.1")
            at.number_input(key="dimse_port").set_value(port)
            at.text_input(key="dimse_aet").set_value("RECORDER").run()
            at.button(key="dimse_echo").click().run()
            assert callers == ["OPERATOR-AET", "HOUNSFIELD"]  # the same address typed: not the stored title
        finally:
            server.shutdown()


def test_the_dimse_settings_are_kept_across_pages():
    from dashboard import dimse_ui, pacs_ui

    keys = {v for k, v in vars(dimse_ui).items() if k.isupper() and isinstance(v, str) and v.startswith("dimse_")}
    assert {k for k in keys if k not in (dimse_ui.STUDIES, dimse_ui.SERIES, dimse_ui.FOUND_AT, dimse_ui.SENT)} \
        <= set(pacs_ui.PERSISTENT)
