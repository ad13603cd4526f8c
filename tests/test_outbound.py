"""core.outbound: refused ranges, numeric host forms, pinning, redirects, total deadline and byte cap."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time

import pytest
import requests

from core.outbound import (
    AddressPolicy,
    AddressRefused,
    AnswerTooLarge,
    DeadlineExceeded,
    GuardedSession,
    OutboundError,
    address_category,
    check_url,
    parse_ip,
)
from tests.fake_servers import FakeServer, body, huge, redirect, trickle

MB = 1024**2
PUBLIC = AddressPolicy()
LOCAL = AddressPolicy(allow_private=True)


def _resolver(mapping):
    calls = []

    def resolve(host, port):
        calls.append(host)
        answer = mapping[host]
        return answer(len(calls)) if callable(answer) else answer
    resolve.calls = calls
    return resolve


class TestAddressCategory:
    @pytest.mark.parametrize("address,category", [
        ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
        ("169.254.169.254", "cloud metadata"), ("169.254.170.2", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
        ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.0.1", "private"),
        ("fc00::1", "private"), ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared (carrier-grade NAT)"), ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
        ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"), ("2001:db8::1", "reserved"),
        # IPv6 forms carrying an IPv4 address are judged by it
        ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "cloud metadata"), ("::ffff:10.0.0.1", "private"),
        ("::127.0.0.1", "loopback"), ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("2002:7f00:1::", "loopback"), ("2002:a00:1::", "private"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnel (Teredo)"),
    ])
    def test_non_public(self, address, category):
        assert address_category(ipaddress.ip_address(address)) == category

    @pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "172.32.0.1", "100.128.0.1", "2606:4700::1111",
                                         "::ffff:8.8.8.8"])
    def test_public(self, address):
        assert address_category(ipaddress.ip_address(address)) is None


class TestParseIp:
    @pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "0177.0.0.01", "127.1",
                                      "127.0.1", "0x7F.0.0.1", "127.0.0.1."])
    def test_numeric_forms_of_loopback(self, host):
        assert parse_ip(host) == ipaddress.ip_address("127.0.0.1")

    @pytest.mark.parametrize("host,address", [("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"), ("[::1]", "::1"),
                                              ("2852039166", "169.254.169.254"),
                                              ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254")])
    def test_other_literals(self, host, address):
        assert parse_ip(host) == ipaddress.ip_address(address)

    def test_names_are_left_to_resolve(self):
        assert parse_ip("pacs.example.org") is None and parse_ip("1e100.net") is None

    def test_invalid_numeric(self):
        with pytest.raises(AddressRefused, match="not a valid address"):
            parse_ip("999.1.1.1")


class TestCheckUrl:
    @pytest.mark.parametrize("url,category", [
        ("http://127.0.0.1:8042/dicom-web", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://0177.0.0.1:80/", "loopback"),
        ("http://[::1]:8042/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://localhost:8042/", "loopback"),  # resolved by the system, from /etc/hosts
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("https://[fc00::1]/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://0.0.0.0:8501/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
    ])
    def test_refused_by_default(self, url, category):
        with pytest.raises(AddressRefused, match=category):
            check_url(url, PUBLIC)

    def test_a_name_resolving_to_a_private_address(self):
        with pytest.raises(AddressRefused, match=r"pacs\.test is a private address \(10\.0\.0\.5\)"):
            check_url("http://pacs.test/dicom-web", PUBLIC, resolver=_resolver({"pacs.test": ["10.0.0.5"]}))

    def test_a_name_resolving_to_public_and_loopback_is_refused(self):
        resolver = _resolver({"mixed.test": ["93.184.215.14", "127.0.0.1"]})
        with pytest.raises(AddressRefused, match="loopback"):
            check_url("http://mixed.test/", PUBLIC, resolver=resolver)

    def test_public_address_allowed(self):
        target = check_url("https://pacs.test:8443/dicom-web", PUBLIC,
                           resolver=_resolver({"pacs.test": ["93.184.215.14"]}))
        got = (target.scheme, target.host, target.port, str(target.ip))
        assert got == ("https", "pacs.test", 8443, "93.184.215.14")
        assert target.host_header == "pacs.test:8443"

    @pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://2130706433/", "http://[::1]/", "http://10.0.0.1/",
                                     "http://172.16.0.1/", "http://192.168.0.1/", "http://[fd00::1]/",
                                     "http://[::ffff:127.0.0.1]/", "http://localhost/"])
    def test_own_network_allowed_when_the_operator_allows(self, url):
        check_url(url, LOCAL)

    @pytest.mark.parametrize("url,category", [("http://169.254.169.254/", "cloud metadata"),
                                              ("http://169.254.1.1/", "link-local"),
                                              ("http://100.64.0.1/", "shared"), ("http://[fe80::1]/", "link-local")])
    def test_own_network_does_not_open_the_rest(self, url, category):
        with pytest.raises(AddressRefused, match=category):
            check_url(url, LOCAL)

    def test_listed_networks(self):
        policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("100.64.0.0/10"),
                                                 ipaddress.ip_network("169.254.0.0/16")))
        check_url("http://100.64.0.1/", policy)
        check_url("http://169.254.1.1/", policy)
        with pytest.raises(AddressRefused, match="cloud metadata"):
            check_url("http://169.254.169.254/", policy)

    @pytest.mark.parametrize("url,match", [
        ("ftp://93.184.215.14/", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://93.184.215.14:70/", "Only http:// and https://"),
        ("http://user:pw@93.184.215.14/", "credential fields"),
        ("http://93.184.215.14:99999/", "invalid port"),
        ("http:///dicom-web", "no host"),
    ])
    def test_malformed(self, url, match):
        with pytest.raises(AddressRefused, match=match):
            check_url(url, PUBLIC)

    def test_unresolvable(self):
        def fail(host, port):
            raise socket.gaierror("no such name")
        with pytest.raises(OutboundError, match="could not be resolved"):
            check_url("http://nowhere.test/", PUBLIC, resolver=fail)


class TestPinning:
    def test_connects_to_the_checked_address_with_the_original_host(self):
        with FakeServer({"/": body(b"pinned")}) as server:
            # A rebinding name: the first answer is loopback, any later one the metadata service.
            resolver = _resolver({"pacs.test": lambda n: ["127.0.0.1"] if n == 1 else ["169.254.169.254"]})
            session = GuardedSession(LOCAL, resolver=resolver)
            r = session.get(f"http://pacs.test:{server.port}/dicom-web")
            assert r.text == "pinned"
            assert resolver.calls == ["pacs.test"]  # resolved once, then the checked address was used
            assert server.requests[0][1]["Host"] == f"pacs.test:{server.port}"

    def test_environment_is_ignored(self, monkeypatch, tmp_path):
        monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
        (tmp_path / ".netrc").write_text("machine 127.0.0.1 login stolen password secret\n")
        monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
        with FakeServer({"/": body(b"ok")}) as server:
            assert GuardedSession(LOCAL).get(server.url + "/").text == "ok"
            assert "Authorization" not in server.requests[0][1]

    def test_ipv6_loopback_when_allowed(self):
        try:
            server = FakeServer({"/": body(b"six")}, host="::1")
        except OSError:
            pytest.skip("no IPv6 loopback here")
        with server:
            assert GuardedSession(LOCAL).get(server.url + "/x").text == "six"
            with pytest.raises(AddressRefused, match="loopback"):
                GuardedSession(PUBLIC).get(server.url + "/x")
        assert len(server.requests) == 1


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for the name ``pacs.test`` only (no IP address in it), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pacs.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("pacs.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem")


def _server_context(tls_files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


class TestPinnedTls:
    def test_the_name_is_sent_and_verified_while_the_checked_address_is_used(self, tls_files):
        cert, context = tls_files[0], _server_context(tls_files)
        names = []
        context.sni_callback = lambda sock, name, ctx: names.append(name)
        with FakeServer({"/": body(b"secure")}, tls=context) as server:
            session = GuardedSession(LOCAL, resolver=_resolver({"pacs.test": ["127.0.0.1"]}))
            session.verify = cert
            assert session.get(f"https://pacs.test:{server.port}/").text == "secure"
            assert names == ["pacs.test"]
            assert server.requests[0][1]["Host"] == f"pacs.test:{server.port}"
            # The same server reached by its address: the certificate does not name it.
            with pytest.raises(requests.exceptions.SSLError):
                session.get(f"https://127.0.0.1:{server.port}/")
            assert len(server.requests) == 1

    def test_the_deadline_stops_a_trickle_over_tls(self, tls_files):
        cert, context = tls_files[0], _server_context(tls_files)
        with FakeServer({"/": trickle(interval=0.5)}, tls=context) as server:
            session = GuardedSession(LOCAL, deadline=2.0, resolver=_resolver({"pacs.test": ["127.0.0.1"]}))
            session.verify = cert
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                session.get(f"https://pacs.test:{server.port}/")
            assert time.monotonic() - start < 15

    def test_unknown_certificates_are_refused(self, tls_files):
        context = _server_context(tls_files)
        with FakeServer({"/": body(b"secure")}, tls=context) as server:
            session = GuardedSession(LOCAL, resolver=_resolver({"pacs.test": ["127.0.0.1"]}))
            with pytest.raises(requests.exceptions.SSLError):
                session.get(f"https://pacs.test:{server.port}/")
            assert server.requests == []


class TestRedirects:
    def test_same_origin_followed(self):
        with FakeServer({"/old": redirect("/new"), "/new": body(b"moved")}) as server:
            r = GuardedSession(LOCAL).get(server.url + "/old")
            assert r.text == "moved" and [h.status_code for h in r.history] == [302]

    @pytest.mark.parametrize("make_location", [
        lambda other, here: f"{other.url}/x",                               # another port
        lambda other, here: f"http://localhost:{here.port}/x",              # another host name, same address
        lambda other, here: f"https://127.0.0.1:{here.port}/x",             # another scheme
        lambda other, here: "http://169.254.169.254/latest/meta-data/",     # the metadata service
    ])
    def test_another_origin_refused(self, make_location):
        with FakeServer({"/x": body(b"internal")}) as other, FakeServer() as here:
            here.routes["/"] = redirect(make_location(other, here))
            with pytest.raises(AddressRefused, match="redirected to another server"):
                GuardedSession(LOCAL).get(here.url + "/start")
            assert other.requests == [] and len(here.requests) == 1

    def test_a_few_at_most(self):
        with FakeServer({"/loop": redirect("/loop")}) as server:
            with pytest.raises(AddressRefused, match="more than 3 times"):
                GuardedSession(LOCAL).get(server.url + "/loop")
            assert len(server.requests) == 4


class TestDeadline:
    def test_a_trickling_body_is_stopped(self):
        with FakeServer({"/": trickle(interval=0.5)}) as server:  # 600 bytes: 300 s at this pace
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="within 2 s"):
                GuardedSession(LOCAL, deadline=2.0, read_timeout=15.0).get(server.url + "/")
            assert time.monotonic() - start < 15  # stopped by the total deadline, not by a read timeout
            assert server.sent < 20

    def test_trickling_headers_are_stopped(self):
        with FakeServer({"/": trickle(interval=0.5, headers_too=True)}) as server:
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                GuardedSession(LOCAL, deadline=2.0, read_timeout=15.0).get(server.url + "/")
            assert time.monotonic() - start < 15

    def test_a_streamed_read_is_stopped(self):
        with FakeServer({"/": trickle(interval=0.5)}) as server:
            r = GuardedSession(LOCAL, deadline=2.0).get(server.url + "/", stream=True)
            with pytest.raises(DeadlineExceeded):
                for _ in r.iter_content(1024):
                    pass


    def test_a_name_server_that_never_answers(self):
        answered = threading.Event()

        def stuck(host, port):
            answered.wait(30)  # released when the test ends
            return ["93.184.215.14"]
        try:
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="within 1 s"):
                GuardedSession(PUBLIC, deadline=1.0, resolver=stuck).get("http://slow-dns.test/")
            assert time.monotonic() - start < 10
        finally:
            answered.set()


class TestByteCap:
    def test_a_huge_answer_stops_at_the_cap(self):
        with FakeServer({"/": huge(1024 * MB)}) as server, pytest.raises(AnswerTooLarge, match="larger than 1 MB"):
            GuardedSession(LOCAL, max_bytes=1 * MB, what="a test").get(server.url + "/")
        assert server.sent < 1 * MB + 32 * MB  # what the sockets' buffers took, not the gigabyte

    def test_a_declared_length_over_the_cap_is_refused_before_reading(self):
        with FakeServer({"/": huge(1024 * MB, content_length=True)}) as server, pytest.raises(AnswerTooLarge):
            GuardedSession(LOCAL, max_bytes=1 * MB).get(server.url + "/", stream=True)
        assert server.sent < 32 * MB

    def test_streamed_reads_are_capped_too(self):
        with FakeServer({"/": huge(1024 * MB)}) as server:
            r = GuardedSession(LOCAL, max_bytes=2 * MB).get(server.url + "/", stream=True)
            seen = 0
            with pytest.raises(AnswerTooLarge):
                for chunk in r.iter_content(64 * 1024):
                    seen += len(chunk)
            assert seen <= 2 * MB

    def test_within_the_cap(self):
        with FakeServer({"/": huge(MB)}) as server:
            assert len(GuardedSession(LOCAL, max_bytes=MB).get(server.url + "/").content) == MB
