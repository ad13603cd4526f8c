"""The PACS page on a shared host: hostile addresses, stored credentials, probing, huge and slow answers.

Every server here is a fake on loopback started by the test (tests/fake_servers.py); each
records the requests and headers it received, so the tests can say what reached it.
"""

from __future__ import annotations

import io
import time
import tracemalloc
from pathlib import Path

import pytest
import requests

from core.memory import MemoryBudget, server_budget, set_server_budget
from core.outbound import AddressPolicy, AnswerTooLarge
from core.pacs import PacsConnection, PacsError, PacsLimits, _parts, _Reserver, retrieve_series, search_studies
from dashboard import hosting
from tests.factory import ct_series, ramp_volume
from tests.fake_servers import (
    FakeServer,
    body,
    closed_port,
    dicomweb_routes,
    huge,
    huge_part,
    json_answer,
    multipart,
    redirect,
    status,
    trickle,
)
from tests.helpers import page_test, page_text

PAGE = Path(__file__).resolve().parents[1] / "pages" / "6_PACS.py"
SEARCH = "FormSubmitter:pacs_search-Search studies"
MB = 1024**2
LOCAL = AddressPolicy(allow_private=True)
STUDY, SERIES = "1.2.826.0.9.1", "1.2.826.0.9.1.1"
FILES = ct_series(ramp_volume((3, 8, 8), seed=3), series_uid=SERIES, patient_name="FAKE^PATIENT",
                  extra={"StudyInstanceUID": STUDY})
STORED = {"username": "operator", "password": "op-s3cret-pw", "token": "op-s3cret-token"}


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch):
    """The tests set what they need; nothing from the environment running them leaks in."""
    for name in hosting.SETTINGS:
        monkeypatch.delenv(f"HOUNSFIELD_{name.upper()}", raising=False)


def _dicomweb() -> FakeServer:
    return FakeServer(dicomweb_routes(FILES, study_uid=STUDY, series_uid=SERIES))


def _page(*, pacs: dict | None = None, auth: bool = False):
    at = page_test(PAGE)
    if pacs is not None:
        at.secrets["pacs"] = pacs
    if auth:
        at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x",
                              "client_id": "id", "client_secret": "s",
                              "server_metadata_url": "https://accounts.example.org/.well-known/openid-configuration"}
    return at.run()


def _search(at, url: str | None = None, auth: str | None = None):
    if url is not None:
        at.text_input(key="pacs_url").set_value(url).run()
    if auth is not None:
        at.radio(key="pacs_auth").set_value(auth).run()
    at.button(key=SEARCH).click().run()
    assert not at.exception
    return at


def _authorizations(server: FakeServer) -> list[str]:
    return [h.get("Authorization") for _, h in server.requests if h.get("Authorization")]


class TestStoredCredentials:
    @pytest.mark.parametrize("auth", ["None", "User and password", "Token"])
    def test_never_sent_to_a_typed_address(self, monkeypatch, auth):
        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        with _dicomweb() as configured, _dicomweb() as typed:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED})
            assert at.text_input(key="pacs_url").value == configured.url + "/dicom-web"
            at = _search(at, typed.url + "/dicom-web", auth)  # the visitor's own address, fields left empty
            assert any("stored credentials are not sent" in c.value for c in at.caption)
            assert typed.requests and _authorizations(typed) == []
            assert configured.requests == []
            assert any("1 study found" in m.value for m in at.markdown)
            assert "s3cret" not in page_text(at)

    def test_results_of_the_configured_pacs_are_not_sent_elsewhere(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        with _dicomweb() as configured, _dicomweb() as typed:
            at = _search(_page(pacs={"url": configured.url + "/dicom-web", **STORED}))
            assert at.selectbox(key="pacs_study_pick")  # results, and the study's series asked for
            at.text_input(key="pacs_url").set_value(typed.url + "/dicom-web").run()
            assert not at.exception and not at.dataframe
            assert typed.requests == []  # no study UID of the configured PACS went to the typed address

    def test_used_with_the_configured_address_only(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        with _dicomweb() as configured:
            at = _search(_page(pacs={"url": configured.url + "/dicom-web", **STORED}))
            assert any("1 study found" in m.value for m in at.markdown)
            assert set(_authorizations(configured)) == {"Bearer op-s3cret-token"}
            assert "s3cret" not in page_text(at)

    def test_not_carried_by_a_redirect(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        with _dicomweb() as elsewhere, FakeServer() as configured:
            configured.routes["/"] = redirect(elsewhere.url + "/dicom-web/studies")
            at = _search(_page(pacs={"url": configured.url + "/dicom-web", **STORED}))
            assert at.error and "redirected to another server" in at.error[0].value
            assert elsewhere.requests == []

    def test_anonymous_visitors_do_not_get_the_configured_pacs_by_default(self):
        with _dicomweb() as configured:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED})
            assert at.text_input(key="pacs_url").value == ""
            assert configured.url not in page_text(at)
            at = _search(at, configured.url + "/dicom-web")  # typing it gives nothing: loopback is refused
            assert at.error and "loopback" in at.error[0].value
            assert configured.requests == []

    def test_typing_the_configured_address_without_access_sends_no_credentials(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        with _dicomweb() as configured:
            _search(_page(pacs={"url": configured.url + "/dicom-web", **STORED}), configured.url + "/dicom-web",
                    "Token")
            assert configured.requests and _authorizations(configured) == []

    def test_login_is_offered_when_set_up(self):
        with _dicomweb() as configured:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED}, auth=True)
            assert at.button(key="pacs_login").label == "Log in"
            assert at.text_input(key="pacs_url").value == ""

    def test_an_allowed_logged_in_user_gets_it(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_ALLOWED_USERS", "alice@example.org, carol@example.org")
        monkeypatch.setattr(hosting, "visitor_email", lambda: "Alice@example.org")
        with _dicomweb() as configured:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED}, auth=True)
            assert at.text_input(key="pacs_url").value == configured.url + "/dicom-web"
            at = _search(at)
            assert any("1 study found" in m.value for m in at.markdown)
            assert set(_authorizations(configured)) == {"Bearer op-s3cret-token"}

    def test_another_logged_in_user_does_not(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_ALLOWED_USERS", "alice@example.org")
        monkeypatch.setattr(hosting, "visitor_email", lambda: "bob@example.org")
        with _dicomweb() as configured:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED}, auth=True)
            assert at.text_input(key="pacs_url").value == ""
            assert any("bob@example.org may not use" in c.value for c in at.caption)

    def test_login_mode_without_login_set_up_opens_nothing(self, monkeypatch):
        monkeypatch.setattr(hosting, "visitor_email", lambda: "alice@example.org")
        with _dicomweb() as configured:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED})
            assert at.text_input(key="pacs_url").value == ""
            assert any("login is not set up" in c.value for c in at.caption)


class TestOperatorSwitches:
    def test_page_off(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_PAGE", "off")
        at = _page()
        assert not at.exception and not at.text_input
        assert "turned the PACS page off" in at.info[0].value

    def test_typed_addresses_off(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_TYPED_ADDRESSES", "off")
        at = _page()
        assert not at.exception and not at.text_input
        assert "does not connect to other PACS servers" in at.info[0].value

    def test_typed_addresses_off_leaves_the_configured_pacs(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_TYPED_ADDRESSES", "off")
        monkeypatch.setenv("HOUNSFIELD_PACS_CONFIGURED_ACCESS", "everyone")
        with _dicomweb() as configured, _dicomweb() as typed:
            at = _page(pacs={"url": configured.url + "/dicom-web", **STORED})
            at.text_input(key="pacs_url").set_value(typed.url + "/dicom-web").run()
            assert at.warning and "connects only to its own PACS" in at.warning[0].value
            assert at.button(key=SEARCH).disabled and typed.requests == []

    def test_settings_from_secrets(self, monkeypatch):
        with _dicomweb() as server:
            at = page_test(PAGE)
            at.secrets["hounsfield"] = {"allow_private_networks": True}
            at.run()
            at = _search(at, server.url + "/dicom-web")
            assert any("1 study found" in m.value for m in at.markdown)

    def test_the_environment_wins_over_secrets(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_PAGE", "off")
        at = page_test(PAGE)
        at.secrets["hounsfield"] = {"pacs_page": "on"}
        assert "turned the PACS page off" in at.run().info[0].value


class TestSettings:
    def test_defaults_are_the_shared_host_ones(self):
        settings = hosting.pacs_settings()
        assert (settings.page, settings.typed_addresses, settings.configured_access, settings.allowed_users) == \
            (True, True, "login", ())
        assert settings.typed_policy == AddressPolicy()
        assert settings.limits == PacsLimits()

    @pytest.mark.parametrize("name,value,expected", [
        ("PACS_CONFIGURED_ACCESS", "yes", "off"),        # not a mode: the closed one
        ("PACS_CONFIGURED_ACCESS", "Everyone", "everyone"),
        ("ALLOW_PRIVATE_NETWORKS", "maybe", False),      # neither true nor false: the default
        ("ALLOW_PRIVATE_NETWORKS", "TRUE", True),
        ("PACS_PAGE", "0", False),
    ])
    def test_values(self, monkeypatch, name, value, expected):
        monkeypatch.setenv(f"HOUNSFIELD_{name}", value)
        settings = hosting.pacs_settings()
        got = {"PACS_CONFIGURED_ACCESS": settings.configured_access, "PACS_PAGE": settings.page,
               "ALLOW_PRIVATE_NETWORKS": settings.typed_policy.allow_private}[name]
        assert got == expected

    def test_numbers_and_networks(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_PACS_ANSWER_MB", "2")
        monkeypatch.setenv("HOUNSFIELD_PACS_SEARCH_SECONDS", "-5")  # not positive: the default
        monkeypatch.setenv("HOUNSFIELD_PACS_SERIES_MB", "lots")
        monkeypatch.setenv("HOUNSFIELD_ALLOWED_NETWORKS", "100.64.0.0/10, not-a-network, 10.1.0.0/16")
        settings = hosting.pacs_settings()
        assert settings.limits == PacsLimits(answer_bytes=2 * MB)
        assert [str(n) for n in settings.typed_policy.allowed_networks] == ["100.64.0.0/10", "10.1.0.0/16"]
        assert settings.configured_policy.allow_private and not settings.typed_policy.allow_private


class TestRefusedRanges:
    @pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]",
                                      "localhost"])
    def test_loopback_in_any_form(self, host):
        with FakeServer({"/": json_answer([])}) as internal:
            at = _search(_page(), f"http://{host}:{internal.port}/dicom-web")
            assert at.error and "loopback" in at.error[0].value
            assert internal.requests == []

    @pytest.mark.parametrize("url,category", [
        ("http://169.254.169.254/latest/meta-data/iam/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://10.0.0.1:8042/dicom-web", "private"),
        ("http://192.168.1.1/dicom-web", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0:8501/", "unspecified"),
    ])
    def test_internal_ranges(self, url, category):
        at = _search(_page(), url)
        assert at.error and category in at.error[0].value

    def test_metadata_stays_refused_on_a_local_install(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        monkeypatch.setenv("HOUNSFIELD_ALLOWED_NETWORKS", "169.254.0.0/16")
        at = _search(_page(), "http://169.254.169.254/latest/meta-data/")
        assert at.error and "cloud metadata" in at.error[0].value

    def test_a_typed_server_cannot_redirect_inside(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        with FakeServer({"/": json_answer([])}) as internal, FakeServer() as typed:
            typed.routes["/"] = redirect(internal.url + "/admin")
            at = _search(_page(), typed.url + "/dicom-web")
            assert at.error and internal.requests == []


def _typed(url: str, **kw) -> PacsConnection:
    return PacsConnection(url, policy=LOCAL, limits=PacsLimits(search_seconds=2.0, read_timeout=1.0), **kw)


class TestNoProbing:
    def test_one_message_for_every_failure_at_a_typed_address(self):
        routes = {"401": status(401), "403": status(403), "404": status(404), "500": status(500),
                  "html": body(b"<html>hi</html>", content_type="text/html"),
                  "json": json_answer({"service": "internal", "status": "ok"}, content_type="application/json"),
                  "slow": trickle(interval=0.5)}
        messages = {}
        servers = {name: FakeServer({"/": route}) for name, route in routes.items()}
        for server in servers.values():
            server.__enter__()
        try:
            urls = {name: s.url + "/dicom-web" for name, s in servers.items()}
            urls["closed port"] = f"http://127.0.0.1:{closed_port()}/dicom-web"
            for name, url in urls.items():
                with pytest.raises(PacsError) as info:
                    search_studies(_typed(url))
                messages[name] = str(info.value).replace(url, "URL")
        finally:
            for server in servers.values():
                server.__exit__()
        assert len(set(messages.values())) == 1, messages
        assert messages["401"].startswith("Could not reach or use a DICOMweb service at URL")

    def test_the_page_says_the_same_for_a_closed_port_and_a_404(self, monkeypatch):
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        with FakeServer({"/": status(404)}) as server:
            url404, closed = server.url + "/dicom-web", f"http://127.0.0.1:{closed_port()}/dicom-web"
            a = _search(_page(), url404).error[0].value.replace(url404, "URL")
            b = _search(_page(), closed).error[0].value.replace(closed, "URL")
        assert a == b

    def test_the_configured_pacs_keeps_its_precise_messages(self):
        with FakeServer({"/": status(403)}) as server, pytest.raises(PacsError, match=r"HTTP 403"):
            search_studies(_typed(server.url + "/dicom-web", configured=True))


class TestNotDicomwebJson:
    @pytest.mark.parametrize("answer", [
        {"AccessKeyId": "AKIA-LEAK", "SecretAccessKey": "LEAK"},
        [{"AccessKeyId": "AKIA-LEAK"}],
        [{"00100010": "LEAK"}],
        [{"00100010": {"Value": ["LEAK"]}}],
        ["LEAK"],
        "LEAK",
    ])
    def test_never_shown(self, monkeypatch, answer):
        monkeypatch.setenv("HOUNSFIELD_ALLOW_PRIVATE_NETWORKS", "1")
        with FakeServer({"/": json_answer(answer, content_type="application/json")}) as internal:
            at = _search(_page(), internal.url + "/dicom-web")
            assert at.error and "LEAK" not in page_text(at) and not at.dataframe

    def test_refused_in_words_for_the_configured_pacs(self):
        with FakeServer({"/": json_answer({"AccessKeyId": "AKIA-LEAK"})}) as server:
            with pytest.raises(PacsError, match="not DICOMweb") as info:
                search_studies(_typed(server.url + "/dicom-web", configured=True))
            assert "LEAK" not in str(info.value)


def _vm(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class TestBounded:
    def test_a_1_gb_search_answer(self):
        with FakeServer({"/": huge(1024 * MB, prefix=b"[")}) as server:
            rss = _vm("VmRSS") if _reset_peak_rss() else None
            tracemalloc.start()
            try:
                with pytest.raises(PacsError, match="larger than 4 MB"):
                    search_studies(_typed(server.url + "/dicom-web"))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 4 * MB + 16 * MB
            if rss is not None:
                assert _vm("VmHWM") - rss < 4 * MB + 64 * MB
            assert server.sent < 64 * MB

    def test_parsing_a_search_answer_is_reserved_first(self):
        answer = b"[" + b"{}," * MB + b"{}]"  # 3 MB of empty data sets: about 75 MB once parsed
        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=64 * MB, session_bytes=32 * MB))
        try:
            refused = "reading a search answer would need 104 MB, and this session may hold at most 32 MB"
            with FakeServer({"/": body(answer, content_type="application/dicom+json")}) as server, \
                    pytest.raises(PacsError, match=refused):
                search_studies(_typed(server.url + "/dicom-web"), owner="visitor")
            assert server_budget().used() == 0
        finally:
            set_server_budget(before)

    def test_at_most_limit_rows(self):
        with FakeServer({"/": json_answer([{}] * 5000)}) as server:
            assert len(search_studies(_typed(server.url + "/dicom-web"), limit=100)) == 100

    def test_a_1_gb_image(self):
        routes = {f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances": json_answer([]),
                  f"/dicom-web/studies/{STUDY}/series/{SERIES}": huge_part(1024 * MB)}
        with FakeServer(routes) as server:
            conn = PacsConnection(server.url + "/dicom-web", policy=LOCAL, limits=PacsLimits(instance_bytes=8 * MB))
            tracemalloc.start()
            try:
                with pytest.raises(PacsError, match="One image of this series is larger than 8 MB"):
                    retrieve_series(conn, STUDY, SERIES, owner="test-huge-image")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 8 * MB + 24 * MB
            assert server_budget().used("test-huge-image") == 0

    def test_a_series_over_its_cap(self):
        routes = {f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances": json_answer([]),
                  f"/dicom-web/studies/{STUDY}/series/{SERIES}": multipart(b"\0" * MB for _ in range(64))}
        with FakeServer(routes) as server:
            conn = PacsConnection(server.url + "/dicom-web", policy=LOCAL, limits=PacsLimits(series_bytes=16 * MB))
            with pytest.raises(PacsError, match="larger than 16 MB, the most this app reads for one series"):
                retrieve_series(conn, STUDY, SERIES)

    def test_a_series_over_the_memory_budget(self):
        routes = {f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances": json_answer([]),
                  f"/dicom-web/studies/{STUDY}/series/{SERIES}": multipart(b"\0" * MB for _ in range(64))}
        before = server_budget()
        set_server_budget(MemoryBudget(total_bytes=64 * MB, session_bytes=24 * MB))
        try:
            with FakeServer(routes) as server, pytest.raises(PacsError, match="this session may hold at most 24 MB"):
                retrieve_series(PacsConnection(server.url + "/dicom-web", policy=LOCAL), STUDY, SERIES, owner="visitor")
            assert server_budget().used() == 0
        finally:
            set_server_budget(before)

    def test_a_retrieved_series_holds_its_memory_until_released(self):
        with _dicomweb() as server:
            files = retrieve_series(PacsConnection(server.url + "/dicom-web", policy=LOCAL), STUDY, SERIES,
                                    owner="holder")
            assert [data for _, data in files] == [data for _, data in FILES]
            assert server_budget().used("holder") >= sum(len(d) for _, d in FILES)
            files.release()
            assert server_budget().used("holder") == 0

    def test_a_trickling_search_answer(self):
        with FakeServer({"/": trickle(interval=0.5)}) as server:
            start = time.monotonic()
            with pytest.raises(PacsError, match="did not answer within 2 s"):
                search_studies(_typed(server.url + "/dicom-web", configured=True))
            assert time.monotonic() - start < 15


def _answer(data: bytes, content_type: str) -> requests.Response:
    response = requests.Response()
    response.raw, response.status_code = io.BytesIO(data), 200
    response.headers["Content-Type"] = content_type
    return response


def _multipart(parts: list[bytes], boundary: str = "b0undary", preamble: bytes = b"") -> bytes:
    out = preamble
    for part in parts:
        out += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


class TestMultipartAnswers:
    """core.pacs._parts: the WADO-RS answer read part by part (requests reads 64 KB at a time)."""

    def _read(self, data: bytes, content_type: str = 'multipart/related; type="application/dicom"; boundary=b0undary',
              max_part: int = 8 * MB) -> list[bytes]:
        reserver = _Reserver("parts-test", "test")
        try:
            return list(_parts(_answer(data, content_type), max_part=max_part, reserver=reserver))
        finally:
            reserver.release()

    def test_parts_across_chunk_edges(self):
        # the second delimiter straddles the first 64 KB chunk, the third the second
        parts = [b"a" * (65536 - 60), b"b" * 65530, b"c" * 10]
        assert self._read(_multipart(parts)) == parts

    def test_quoted_boundary_and_preamble(self):
        data = _multipart([b"x", b"y"], boundary="q b", preamble=b"ignore me\r\n")
        assert self._read(data, 'multipart/related; boundary="q b"; type="application/dicom"') == [b"x", b"y"]

    def test_a_bare_dicom_body(self):
        assert self._read(b"DICM" * 10, "application/dicom") == [b"DICM" * 10]

    def test_a_bare_dicom_body_over_the_cap(self):
        with pytest.raises(AnswerTooLarge):
            self._read(b"\0" * (2 * MB), "application/dicom", max_part=MB)

    @pytest.mark.parametrize("data,content_type,match", [
        (_multipart([b"x"])[:-20], None, "ended in the middle"),
        (b"no delimiter at all", None, "ended in the middle"),
        (b"--b0undary\r\nno headers end--b0undary--", None, "ended in the middle"),
        (b"--b0undary\r\nno blank line\r\n--b0undary--\r\n", None, "without headers"),
        (_multipart([b"x"]), "application/json", "not multipart/related"),
        (_multipart([b"x"]), "multipart/related", "without a boundary"),
    ])
    def test_broken_answers(self, data, content_type, match):
        with pytest.raises(ValueError, match=match):
            self._read(data, *(() if content_type is None else (content_type,)))
