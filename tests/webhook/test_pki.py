"""app.pki.certs: what the certificates say, and how they are written."""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from app.pki.certs import (
    Bundle,
    CertError,
    KeyPair,
    bundle_files,
    check_bundle,
    check_dns_name,
    describe,
    make_bundle,
    make_ca,
    make_serving,
    read_bundle,
    write_bundle,
)
from tests.conftest import ROOT

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_the_ca_is_a_p256_ca_for_ten_years() -> None:
    info = describe(make_ca(now=NOW).cert_pem)
    assert info.is_ca
    assert info.key_type == "ECDSA secp256r1"
    assert info.subject_cn == info.issuer_cn == "eip-guard CA"
    assert info.not_before <= NOW
    assert info.not_after == NOW + dt.timedelta(days=3650)


def test_the_serving_certificate_has_the_sans_and_one_year() -> None:
    bundle = make_bundle(["eip-guard.eip-guard.svc", "localhost"], ["127.0.0.1", "::1"], now=NOW)
    info = describe(bundle.serving.cert_pem)
    assert not info.is_ca
    assert info.key_type == "ECDSA secp256r1"
    assert info.dns_names == ("eip-guard.eip-guard.svc", "localhost")
    assert info.ip_addresses == ("127.0.0.1", "::1")
    assert info.issuer_cn == "eip-guard CA"
    assert info.not_after == NOW + dt.timedelta(days=365)
    assert NOW - dt.timedelta(minutes=10) < info.not_before <= NOW


def test_the_serving_certificate_is_signed_by_its_ca_for_server_auth() -> None:
    bundle = make_bundle(["eip-guard.eip-guard.svc"])
    ca = x509.load_pem_x509_certificate(bundle.ca.cert_pem)
    leaf = x509.load_pem_x509_certificate(bundle.serving.cert_pem)
    leaf.verify_directly_issued_by(ca)  # raises if not
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    # Only the CA may sign certificates and CRLs; both sign with their key (ECDSA TLS).
    for cert, signs in ((ca, True), (leaf, False)):
        key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert key_usage.critical and key_usage.value.digital_signature
        assert (key_usage.value.key_cert_sign, key_usage.value.crl_sign) == (signs, signs)
    other = make_ca()
    with pytest.raises(InvalidSignature):  # same issuer name, another key
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(other.cert_pem))


def test_the_ca_bundle_is_base64_of_the_ca_pem() -> None:
    bundle = make_bundle(["a.b.svc"])
    assert base64.b64decode(bundle.ca_bundle) == bundle.ca.cert_pem
    assert bundle.ca.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert bundle.serving.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_a_serving_certificate_never_outlives_its_ca() -> None:
    ca = make_ca(validity=dt.timedelta(days=30), now=NOW)
    info = describe(make_serving(ca, ["x.svc"], now=NOW).cert_pem)
    assert info.not_after == NOW + dt.timedelta(days=30)
    with pytest.raises(CertError, match="the CA expired"):
        make_serving(ca, ["x.svc"], now=NOW + dt.timedelta(days=31))


@pytest.mark.parametrize(
    ("dns", "ips", "match"),
    [
        ([], [], "at least one DNS name"),
        (["bad name"], [], "not a DNS name"),
        (["-x.svc"], [], "not a DNS name"),
        (["a..b"], [], "not a DNS name"),
        (["ok.svc"], ["1.2.3"], "not an IP address"),
        (["ok.svc"], ["10.0.0.0/8"], "not an IP address"),
        # A client that connects to an IP checks IP SANs only: as a DNS SAN it never matches.
        (["10.0.0.1"], [], "an IP address, not a DNS name: give it with --ip"),
        (["::1"], [], "an IP address, not a DNS name"),
        (["ok.svc"], ["fe80::1%eth0"], "no zone; give fe80::1"),
    ],
)
def test_bad_sans_are_refused_with_a_reason(dns: list[str], ips: list[str], match: str) -> None:
    with pytest.raises(CertError, match=match):
        make_bundle(dns, ips)


def test_a_wildcard_san_is_accepted() -> None:
    assert describe(make_bundle(["*.eip-guard.svc"]).serving.cert_pem).dns_names == (
        "*.eip-guard.svc",
    )


def test_garbage_is_not_a_ca() -> None:
    with pytest.raises(CertError, match="not a PEM"):
        make_serving(KeyPair(b"nope", b"nope"), ["x.svc"])
    with pytest.raises(CertError, match="not a PEM"):
        describe(b"nope")


def test_write_bundle_writes_four_files_with_private_keys_0600(tmp_path: Path) -> None:
    bundle = make_bundle(["x.svc"])
    out = tmp_path / "new" / "certs"
    paths = write_bundle(bundle, out)
    assert sorted(p.name for p in paths) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert (out / "tls.crt").read_bytes() == bundle.serving.cert_pem
    assert (out / "ca.key").read_bytes() == bundle.ca.key_pem
    for name, mode in (("ca.key", 0o600), ("tls.key", 0o600), ("ca.crt", 0o644)):
        assert stat.S_IMODE((out / name).stat().st_mode) == mode
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_write_bundle_never_replaces_files_without_force(tmp_path: Path) -> None:
    first, second = make_bundle(["x.svc"]), make_bundle(["x.svc"])
    write_bundle(first, tmp_path)
    with pytest.raises(CertError, match="already exist; pass --force"):
        write_bundle(second, tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == first.ca.cert_pem
    (tmp_path / "tls.key").chmod(0o644)
    write_bundle(second, tmp_path, force=True)
    assert (tmp_path / "ca.crt").read_bytes() == second.ca.cert_pem
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600


def test_write_bundle_reports_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CertError, match="cannot write certificates") as raised:
        write_bundle(make_bundle(["x.svc"]), blocker / "certs")
    # The reason once, not Python's "[Errno 20] ...: '<the path again>'".
    assert str(raised.value).endswith("(none replaced): Not a directory"), raised.value
    assert "Errno" not in str(raised.value)


def test_a_long_dns_name_is_named_cut_in_its_error() -> None:
    with pytest.raises(CertError, match="is not a DNS name") as raised:
        check_dns_name("a" * 300 + "_")
    assert "a" * 200 not in str(raised.value) and "..." in str(raised.value), raised.value


def test_read_bundle_reads_back_what_write_bundle_wrote(tmp_path: Path) -> None:
    bundle = make_bundle(["x.svc"])
    write_bundle(bundle, tmp_path)
    assert read_bundle(tmp_path) == bundle


def test_read_bundle_refuses_parts_that_do_not_belong_together(tmp_path: Path) -> None:
    first, second = make_bundle(["x.svc"]), make_bundle(["x.svc"])
    write_bundle(first, tmp_path)
    (tmp_path / "tls.key").write_bytes(second.serving.key_pem)
    with pytest.raises(CertError, match="serving key does not belong"):
        read_bundle(tmp_path)
    (tmp_path / "tls.key").write_bytes(second.serving.key_pem)
    (tmp_path / "tls.crt").write_bytes(second.serving.cert_pem)
    with pytest.raises(CertError, match="not signed by this CA"):
        read_bundle(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(CertError, match="cannot read certificates"):
        read_bundle(tmp_path)


def test_check_bundle_accepts_a_fresh_bundle() -> None:
    bundle = make_bundle(["x.svc"])
    assert check_bundle(bundle) is bundle
    with pytest.raises(CertError, match="CA key does not belong"):
        check_bundle(Bundle(KeyPair(bundle.ca.cert_pem, bundle.serving.key_pem), bundle.serving))


_LIMITED_WRITE = """
import resource, signal, sys
from pathlib import Path
from app.pki.certs import CertError, make_bundle, write_bundle
new = make_bundle(sys.argv[2:])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (700, resource.RLIM_INFINITY))
try:
    write_bundle(new, Path(sys.argv[1]), force=True)
except CertError as exc:
    print(exc)
"""


def test_a_write_that_fails_half_way_replaces_none_of_the_files(tmp_path: Path) -> None:
    """`certs --force` where the third file cannot be written (a file-size limit makes the
    kernel refuse it, as a full disk would) must leave the old set whole: a new CA beside the
    old serving pair would serve a certificate that no caBundle verifies."""
    names = ["eip-guard.eip-guard.svc", "eip-guard.eip-guard.svc.cluster.local", "eip-guard"]
    old = make_bundle(names)
    write_bundle(old, tmp_path)
    sizes = {name: len(data) for name, data in bundle_files(old).items()}
    assert sizes["ca.crt"] < 700 < sizes["tls.crt"]  # so the limit stops the third file
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITE, str(tmp_path), *names],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert read_bundle(tmp_path) == old
    assert "cannot write certificates (none replaced)" in done.stdout
    assert "File too large" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_a_place_that_cannot_take_a_file_replaces_none_of_the_others(tmp_path: Path) -> None:
    # A directory where tls.key goes: the renames of the other three came first, and the
    # set was left half new while the error said "none replaced".
    names = ["eip-guard.eip-guard.svc"]
    old = make_bundle(names)
    write_bundle(old, tmp_path)
    (tmp_path / "tls.key").unlink()
    (tmp_path / "tls.key").mkdir()
    before = {n: (tmp_path / n).read_bytes() for n in ("ca.crt", "ca.key", "tls.crt")}
    with pytest.raises(CertError, match=r"tls\.key not a regular file \(a directory\?\)"):
        write_bundle(make_bundle(names), tmp_path, force=True)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_a_rename_that_fails_half_way_puts_the_old_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renames in one directory do not fail for want of space; this one fails all the same
    # (injected: the kernel gives no way to refuse the third rename once the others passed).
    names = ["eip-guard.eip-guard.svc"]
    old = make_bundle(names)
    write_bundle(old, tmp_path)
    real, calls = os.replace, []

    def third_fails(src: str, dst: Path) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", third_fails)  # the module's os is this one
    with pytest.raises(CertError, match="none replaced"):
        write_bundle(make_bundle(names), tmp_path, force=True)
    monkeypatch.undo()
    assert read_bundle(tmp_path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
