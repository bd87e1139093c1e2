"""`eip-guard certs` and `eip-guard serve` through main(), and serve as a real process."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from app.pki.certs import describe
from app.webhook.server import listen
from tests.support import log_lines, run_cli

from .conftest import EXAMPLES, Certs, client, example_eip

ROOT = EXAMPLES.parent


def one_line_error(err: str) -> str:
    assert err.startswith("eip-guard: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# --- eip-guard certs -------------------------------------------------------------------


def test_certs_writes_the_files_and_prints_the_ca_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(
        capsys, "certs", "--out", str(tmp_path), "--dns", "eip-guard.eip-guard.svc",
        "--dns", "localhost", "--ip", "127.0.0.1",
    )  # fmt: skip
    assert code == 0
    assert base64.b64decode(out.strip()) == (tmp_path / "ca.crt").read_bytes()
    assert "wrote" in err
    info = describe((tmp_path / "tls.crt").read_bytes())
    assert info.dns_names == ("eip-guard.eip-guard.svc", "localhost")
    assert info.ip_addresses == ("127.0.0.1",)
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600


def test_certs_does_not_overwrite_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_cli(capsys, "certs", "--out", str(tmp_path), "--dns", "a.svc")[0] == 0
    before = (tmp_path / "ca.crt").read_bytes()
    code, out, err = run_cli(capsys, "certs", "--out", str(tmp_path), "--dns", "a.svc")
    assert code == 2
    assert out == ""
    assert "already exist; pass --force" in one_line_error(err)
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert run_cli(capsys, "certs", "--out", str(tmp_path), "--dns", "a.svc", "--force")[0] == 0
    assert (tmp_path / "ca.crt").read_bytes() != before


def test_certs_names_a_directory_in_the_way_not_a_temporary_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run_cli(capsys, "certs", "--out", str(tmp_path), "--dns", "a.svc")[0] == 0
    (tmp_path / "ca.crt").unlink()
    (tmp_path / "ca.crt").mkdir()
    before = (tmp_path / "tls.crt").read_bytes()
    code, _, err = run_cli(capsys, "certs", "--out", str(tmp_path), "--dns", "a.svc", "--force")
    assert code == 2
    assert one_line_error(err) == (
        f"eip-guard: {tmp_path}: ca.crt not a regular file (a directory?): remove it, "
        "or choose another --out\n"
    )
    assert (tmp_path / "tls.crt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_certs_renew_keeps_the_ca_so_the_ca_bundle_stays(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    names = ["--dns", "eip-guard.eip-guard.svc", "--ip", "127.0.0.1"]
    code, bundle, _ = run_cli(capsys, "certs", "--out", str(tmp_path), *names)
    assert code == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("ca.crt", "ca.key", "tls.crt")}
    code, again, err = run_cli(capsys, "certs", "--out", str(tmp_path), *names, "--renew")
    assert code == 0, err
    assert again == bundle  # nothing to change in the cluster
    assert err == f"eip-guard: wrote {tmp_path / 'tls.crt'}, {tmp_path / 'tls.key'}\n"
    for name in ("ca.crt", "ca.key"):
        assert (tmp_path / name).read_bytes() == before[name]
    renewed = (tmp_path / "tls.crt").read_bytes()
    assert renewed != before["tls.crt"]
    issued = x509.load_pem_x509_certificate(renewed)
    issued.verify_directly_issued_by(x509.load_pem_x509_certificate(before["ca.crt"]))
    assert describe(renewed).ip_addresses == ("127.0.0.1",)
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("order", ["new first", "old first"])
def test_certs_renew_signs_with_the_ca_of_ca_key_in_a_rotation_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, order: str
) -> None:
    """ca.crt holding the old and the new CA (a caBundle during a rotation, in either
    order): the new serving certificate is signed by the CA whose key is ca.key, and the
    caBundle printed stays ca.crt whole, both CAs. Old first was refused: "ca.key does not
    belong to ca.crt", the first certificate of the file taken for the CA."""
    names = ["--dns", "eip-guard.eip-guard.svc"]
    old, new = tmp_path / "old", tmp_path / "new"
    for folder in (old, new):
        assert run_cli(capsys, "certs", "--out", str(folder), *names)[0] == 0
    pems = [(new / "ca.crt").read_bytes(), (old / "ca.crt").read_bytes()]
    both = b"".join(pems if order == "new first" else pems[::-1])
    (new / "ca.crt").write_bytes(both)
    code, bundle, err = run_cli(capsys, "certs", "--out", str(new), *names, "--renew")
    assert code == 0, err
    assert base64.b64decode(bundle) == both
    issued = x509.load_pem_x509_certificate((new / "tls.crt").read_bytes())
    issued.verify_directly_issued_by(x509.load_pem_x509_certificate(pems[0]))


def test_certs_renew_with_a_key_of_no_ca_in_ca_crt_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    names = ["--dns", "a.svc"]
    for folder in ("a", "b", "c"):
        assert run_cli(capsys, "certs", "--out", str(tmp_path / folder), *names)[0] == 0
    both = (tmp_path / "a/ca.crt").read_bytes() + (tmp_path / "b/ca.crt").read_bytes()
    (tmp_path / "c/ca.crt").write_bytes(both)
    code, out, err = run_cli(capsys, "certs", "--out", str(tmp_path / "c"), *names, "--renew")
    assert (code, out) == (2, "")
    assert one_line_error(err).startswith(
        f"eip-guard: {tmp_path / 'c'}: ca.key belongs to none of the 2 certificates in ca.crt; "
    )


def test_certs_renew_without_a_ca_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(capsys, "certs", "--out", str(tmp_path), "--dns", "a.svc", "--renew")
    assert (code, out) == (2, "")
    assert one_line_error(err) == (
        f"eip-guard: {tmp_path / 'ca.crt'}: No such file or directory: --renew signs with the "
        "CA in --out; run without --renew (and with --force) for a new CA, then update the "
        "caBundle\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--dns", "not a name"], "not a DNS name"),
        (["--dns", "a.svc", "--ip", "300.1.1.1"], "not an IP address"),
        ([], "--dns"),
    ],
)
def test_certs_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], expected: str
) -> None:
    code, _, err = run_cli(capsys, "certs", "--out", str(tmp_path), *argv)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "ca.crt").exists()


def test_certs_refuses_a_file_as_its_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    taken = tmp_path / "certs"
    taken.write_text("not a directory")
    code, _, err = run_cli(capsys, "certs", "--out", str(taken), "--dns", "x.svc")
    assert code == 2
    assert one_line_error(err) == (
        f"eip-guard: {taken}: a file, not a directory: --out names where the four files go\n"
    )
    assert taken.read_text() == "not a directory"


# --- eip-guard serve: bad input -----------------------------------------------------------


def serve_args(
    certs: Certs, *extra: str, cert: Path | None = None, key: Path | None = None
) -> list[str]:
    return [
        "serve", "--cluster", str(EXAMPLES / "cluster.yaml"),
        "--tls-cert-file", str(cert or certs.cert), "--tls-key-file", str(key or certs.key),
        "--host", "127.0.0.1", *extra,
    ]  # fmt: skip


def test_serve_refuses_missing_tls_files(
    capsys: pytest.CaptureFixture[str], certs: Certs, tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, *serve_args(certs, cert=tmp_path / "missing.crt"))
    assert code == 2
    assert "--tls-cert-file" in one_line_error(err)
    assert "no such file" in err
    code, _, err = run_cli(capsys, *serve_args(certs, key=tmp_path))
    assert code == 2
    assert f"--tls-key-file {tmp_path}: a directory, not a file" in one_line_error(err)


def test_serve_refuses_garbage_tls_files(
    capsys: pytest.CaptureFixture[str], certs: Certs, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    code, _, err = run_cli(capsys, *serve_args(certs, cert=garbage))
    assert code == 2
    assert "cannot load the certificate and key" in one_line_error(err)


def test_serve_refuses_a_key_of_another_certificate(
    capsys: pytest.CaptureFixture[str], certs: Certs, other_certs: Certs
) -> None:
    code, _, err = run_cli(capsys, *serve_args(certs, key=other_certs.key))
    assert code == 2
    assert "the key does not belong to the certificate" in one_line_error(err)


def test_serve_refuses_a_bad_snapshot(
    capsys: pytest.CaptureFixture[str], certs: Certs, tmp_path: Path
) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("items: [1, 2\n")
    argv = serve_args(certs)
    argv[2] = str(bad)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "not valid YAML" in one_line_error(err)


def test_serve_refuses_a_bad_policy(
    capsys: pytest.CaptureFixture[str], certs: Certs, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  no-such-rule: deny\n")
    code, _, err = run_cli(capsys, *serve_args(certs, "--policy", str(policy)))
    assert code == 2
    assert "unknown rule id" in one_line_error(err)


def test_serve_refuses_a_bad_port(capsys: pytest.CaptureFixture[str], certs: Certs) -> None:
    code, _, err = run_cli(capsys, *serve_args(certs, "--port", "70000"))
    assert code == 2
    assert "expected 0-65535" in one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-reload-interval", "nan"], "--tls-reload-interval nan: expected a finite number"),
        (["--tls-reload-interval", "0"], "--tls-reload-interval 0.0: expected a finite number"),
        (["--tls-reload-interval", "1e-9"], "of seconds, at least 0.1"),
        (["--kubeconfig", "k", "--resync-interval", "nan"], "--resync-interval nan: expected"),
        (["--kubeconfig", "k", "--audit-interval", "inf"], "--audit-interval inf: expected"),
        (["--kubeconfig", "k", "--audit-interval", "-1"], "of seconds, 0 or more"),
    ],
)
def test_serve_refuses_seconds_that_are_no_wait(
    capsys: pytest.CaptureFixture[str], certs: Certs, argv: list[str], message: str
) -> None:
    """float() reads nan and inf: a wait of nan seconds returns at once (a loop that spins),
    a wait of inf never ends."""
    # An address no socket takes: were the value let through, serve fails there, not hangs.
    args = serve_args(certs, *argv, "--host", "999.1.1.1")
    if "--kubeconfig" in argv:  # live mode: no snapshot
        del args[1:3]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert message in one_line_error(err)


def test_serve_refuses_a_port_in_use(capsys: pytest.CaptureFixture[str], certs: Certs) -> None:
    taken = listen("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        code, _, err = run_cli(capsys, *serve_args(certs, "--port", port))
    finally:
        taken.close()
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(err)


# --- eip-guard serve: a real process ---------------------------------------------------------


def test_serve_refuses_an_empty_snapshot(
    capsys: pytest.CaptureFixture[str], certs: Certs, tmp_path: Path
) -> None:
    empty = tmp_path / "cluster.yaml"
    empty.write_text("")  # what a failed 'kubectl get ... > cluster.yaml' leaves
    code, _, err = run_cli(capsys, *serve_args(certs, "--cluster", str(empty)))
    assert code == 2
    assert f"{empty}: empty, no YAML or JSON document" in one_line_error(err)


def test_serve_answers_the_example_reviews_and_stops_cleanly_on_sigterm(
    certs: Certs, tmp_path: Path
) -> None:
    odd = tmp_path / "odd.yaml"  # a value no rule can use: logged, not fatal
    odd.write_text(
        "kind: Service\nmetadata: {name: odd, namespace: web}\nspec: {externalIPs: [10.0.0.300]}\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main",
         *serve_args(certs, "--port", "0", "--cluster", str(odd))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with log_lines(proc) as lines:
        problem = lines.until("cluster snapshot")
        assert problem["level"] == "warning"
        assert problem["problem"].startswith(
            "Service web/odd (spec.externalIPs): ignored '10.0.0.300'"
        )
        line = lines.until("serving")
        assert line["eips"] == 1
        port = int(line["address"].rsplit(":", 1)[1].split("/")[0])
        # The socket listens before "serving" is logged: no wait needed.
        with client(port, certs.ca) as http:
            assert http.get("/readyz").status_code == 200
            answers = {}
            for which in ("bad", "good"):
                body = (EXAMPLES / f"review-{which}.json").read_bytes()
                response = http.post(
                    "/validate-eip?timeout=10s",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                answers[which] = response.json()["response"]
        assert answers["bad"]["allowed"] is False
        assert answers["bad"]["status"]["code"] == 422
        assert answers["good"]["allowed"] is True
        decision = lines.until("admission decision")
        assert decision["verdict"] == "denied"
        assert decision["denied_by"] == ["can-reach-in-eip", "can-reach-service-ip"]
        assert decision["uid"] == answers["bad"]["uid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert lines.until("Shutting down")["logger"] == "uvicorn.error"


def test_the_example_reviews_carry_the_example_eips() -> None:
    for which in ("bad", "good"):
        review = json.loads((EXAMPLES / f"review-{which}.json").read_text())
        assert review["apiVersion"] == "admission.k8s.io/v1"
        assert review["kind"] == "AdmissionReview"
        assert review["request"]["operation"] == "CREATE"
        assert review["request"]["object"] == example_eip(which)
