"""The webhook registration, the three certificate modes, the policy file and the test hook."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from cel_expr_python import cel

from app.core.inventory import build
from app.core.rules import DEFAULT_POLICY, RULE_IDS
from app.core.sources import StaticSource
from app.core.verdict import Action
from app.pki.certs import make_ca
from app.sources.files import load_policy
from app.webhook.admission import decide
from app.webhook.reviews import AdmissionRequest
from tests.chart.rendering import (
    EXTERNAL_CA_BUNDLE,
    NAMESPACE,
    SCENARIOS,
    VAP_CAPABILITY,
    Obj,
    RenderFn,
    by_kind,
    one,
)
from tests.core.objects import eip, node

SANS = [
    "eip-guard",
    "eip-guard.eip-guard",
    "eip-guard.eip-guard.svc",
    "eip-guard.eip-guard.svc.cluster.local",
]


def _container(objs: list[Obj]) -> dict[str, Any]:
    container: dict[str, Any] = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def _volumes(objs: list[Obj]) -> dict[str, dict[str, Any]]:
    spec = one(objs, "Deployment")["spec"]["template"]["spec"]
    return {v["name"]: v for v in spec["volumes"]}


def test_webhook_configuration_is_exactly_as_specified(render: RenderFn) -> None:
    objs = render()
    vwc = one(objs, "ValidatingWebhookConfiguration")
    review, warn_delete = vwc["webhooks"]
    service = one(objs, "Service")
    # What they let through is tested below, by running them.
    assert [c["name"] for c in review.pop("matchConditions")] == [
        "update-changes-what-eip-guard-reads"
    ]
    assert [c["name"] for c in warn_delete.pop("matchConditions")] == ["delete-of-an-eip-in-use"]
    common = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": 5,
        "clientConfig": {
            "service": {
                "name": service["metadata"]["name"],
                "namespace": NAMESPACE,
                "path": "/validate-eip",
                "port": 443,
            }
        },
    }

    def rules(*operations: str) -> list[Obj]:
        return [
            {
                "apiGroups": ["network.kubesphere.io"],
                "apiVersions": ["v1alpha2", "v1alpha1"],
                "resources": ["eips"],  # no subresources: status writes pass untouched
                "operations": list(operations),
                "scope": "Cluster",
            }
        ]

    assert review == {
        "name": "validate.eip-guard.io",
        **common,
        "failurePolicy": "Fail",
        "rules": rules("CREATE", "UPDATE"),
    }
    # DELETE only ever warns: never refused because no replica answers.
    assert warn_delete == {
        "name": "warn-delete.eip-guard.io",
        **common,
        "failurePolicy": "Ignore",
        "rules": rules("DELETE"),
    }
    https = next(p for p in service["spec"]["ports"] if p["name"] == "https")
    assert https == {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}


def test_timeout_and_failure_policy_come_from_values(render: RenderFn) -> None:
    values = {"webhook": {"timeoutSeconds": 12, "failurePolicy": "Ignore"}}
    review, warn_delete = one(render(values), "ValidatingWebhookConfiguration")["webhooks"]
    assert (review["timeoutSeconds"], review["failurePolicy"]) == (12, "Ignore")
    assert (warn_delete["timeoutSeconds"], warn_delete["failurePolicy"]) == (12, "Ignore")


def test_self_mode_manages_its_own_secret(render: RenderFn) -> None:
    objs = render()
    args = _container(objs)["args"]
    secret = one(objs, "Secret")
    vwc = one(objs, "ValidatingWebhookConfiguration")
    assert f"--tls-secret={secret['metadata']['name']}" in args
    assert f"--webhook-configuration={vwc['metadata']['name']}" in args
    assert "--service=eip-guard" in args and "--namespace=$(POD_NAMESPACE)" in args
    assert all("caBundle" not in h["clientConfig"] for h in vwc["webhooks"])  # patched by it
    assert "tls" not in _volumes(objs) and not any("--tls-cert-file" in a for a in args)
    assert not [o for o in objs if o["apiVersion"].startswith("cert-manager.io/")]


def test_cert_manager_mode_builds_a_ca_chain_and_injects_it(render: RenderFn) -> None:
    objs = render({"certificates": {"mode": "cert-manager"}})
    vwc = one(objs, "ValidatingWebhookConfiguration")
    ref = vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    namespace, name = ref.split("/")
    serving = one(objs, "Certificate", name)
    assert namespace == NAMESPACE and serving["metadata"]["namespace"] == NAMESPACE
    assert serving["spec"]["dnsNames"] == SANS
    assert serving["spec"]["privateKey"]["algorithm"] == "ECDSA"
    # The serving certificate is signed by a CA Issuer whose CA a self-signed Issuer made,
    # so renewing the serving certificate never changes the injected caBundle.
    ca_issuer = one(objs, "Issuer", serving["spec"]["issuerRef"]["name"])
    ca_cert = one(objs, "Certificate", "eip-guard-ca")
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    assert ca_cert["spec"]["isCA"] is True
    assert "selfSigned" in one(objs, "Issuer", ca_cert["spec"]["issuerRef"]["name"])["spec"]
    volume = _volumes(objs)["tls"]["secret"]
    assert volume["secretName"] == serving["spec"]["secretName"]
    args = _container(objs)["args"]
    assert "--tls-cert-file=/etc/eip-guard/tls/tls.crt" in args
    assert not any(a.startswith("--tls-secret") for a in args)
    assert not by_kind(objs, "Secret")


def test_cert_manager_mode_can_use_an_existing_issuer(render: RenderFn) -> None:
    values, _ = SCENARIOS["cert-manager-issuer"]
    objs = render(values)
    assert not by_kind(objs, "Issuer")
    (serving,) = by_kind(objs, "Certificate")
    ref = serving["spec"]["issuerRef"]
    assert ref == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_external_mode_uses_the_named_secret_and_ca_bundle(render: RenderFn) -> None:
    values, _ = SCENARIOS["external"]
    objs = render(values)
    vwc = one(objs, "ValidatingWebhookConfiguration")
    assert [h["clientConfig"]["caBundle"] for h in vwc["webhooks"]] == [EXTERNAL_CA_BUNDLE] * 2
    assert "annotations" not in vwc["metadata"]
    assert _volumes(objs)["tls"]["secret"]["secretName"] == "my-webhook-tls"
    assert not by_kind(objs, "Secret") and not by_kind(objs, "Certificate")


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


CA_PEM = make_ca("test-ca").cert_pem


@pytest.mark.parametrize(
    ("bundle", "says"),
    [
        # base64 of something that is no PEM: the API server stores it, then every call to
        # the webhook fails its TLS handshake and, under Fail, every Eip change is refused.
        (_b64("CABUNDLE"), "is no PEM certificate"),
        # `kubectl get secret -o jsonpath='{.data.ca\\.crt}' | base64`: encoded twice.
        (_b64(_b64(CA_PEM)), "base64 twice"),
        # The key instead of the certificate.
        (_b64(b"-----BEGIN PRIVATE KEY-----\nMIG\n-----END PRIVATE KEY-----\n"), "no PEM"),
        ("Q0FCVU5ETEU", "is not valid base64"),
    ],
)
def test_external_mode_refuses_a_ca_bundle_that_is_no_pem_certificate(
    render: RenderFn, bundle: str, says: str
) -> None:
    external = {"secretName": "my-webhook-tls", "caBundle": bundle}
    with pytest.raises(helm_python.HelmError, match=f"certificates.external.caBundle .*{says}"):
        render({"certificates": {"mode": "external", "external": external}})


def test_external_mode_takes_a_bundle_of_several_certificates(render: RenderFn) -> None:
    bundle = _b64(CA_PEM + make_ca("other-ca").cert_pem)
    external = {"secretName": "my-webhook-tls", "caBundle": bundle}
    vwc = one(render({"certificates": {"mode": "external", "external": external}}),
              "ValidatingWebhookConfiguration")  # fmt: skip
    assert [h["clientConfig"]["caBundle"] for h in vwc["webhooks"]] == [bundle] * 2


@pytest.mark.parametrize("missing", ["secretName", "caBundle"])
def test_external_mode_requires_secret_and_bundle(render: RenderFn, missing: str) -> None:
    external = {"secretName": "my-webhook-tls", "caBundle": EXTERNAL_CA_BUNDLE, missing: ""}
    with pytest.raises(Exception, match=f"certificates.external.{missing} is required"):
        render({"certificates": {"mode": "external", "external": external}})


@pytest.mark.parametrize(
    ("setting", "capable", "expected"),
    [
        ("auto", False, False),
        ("auto", True, True),
        (True, False, True),
        (False, True, False),
    ],
)
def test_admission_policy_toggle(
    render: RenderFn, setting: object, capable: bool, expected: bool
) -> None:
    values = {"validatingAdmissionPolicy": {"enabled": setting}}
    objs = render(values, api_versions=[VAP_CAPABILITY] if capable else [])
    policies = by_kind(objs, "ValidatingAdmissionPolicy")
    bindings = by_kind(objs, "ValidatingAdmissionPolicyBinding")
    assert (len(policies), len(bindings)) == ((1, 1) if expected else (0, 0))
    script = one(objs, "ConfigMap", "eip-guard-test")["data"]["run.sh"]
    assert ("ValidatingAdmissionPolicy 'eip-guard-can-reach-syntax'" in script) is expected
    if expected:
        assert bindings[0]["spec"] == {
            "policyName": policies[0]["metadata"]["name"],
            "validationActions": ["Deny"],
        }
        rule = policies[0]["spec"]["matchConstraints"]["resourceRules"][0]
        assert rule["apiGroups"] == ["network.kubesphere.io"] and rule["resources"] == ["eips"]


def test_policy_file_from_values_loads_in_the_app(render: RenderFn, tmp_path: Path) -> None:
    values, _ = SCENARIOS["policy-and-placement"]
    objs = render(values)
    cm = one(objs, "ConfigMap", "eip-guard-policy")
    path = tmp_path / "policy.yaml"
    path.write_text(cm["data"]["policy.yaml"])
    policy = load_policy(path)
    assert policy.action("can-reach-pod-cidr") is Action.WARN
    assert policy.action("address-overlap") is Action.OFF
    assert policy.action("can-reach-node-ip") is Action.DENY
    assert policy.allow_overrides is False
    mount = {m["name"]: m["mountPath"] for m in _container(objs)["volumeMounts"]}
    assert f"--policy={mount['policy']}/policy.yaml" in _container(objs)["args"]
    assert load_policy(_write(tmp_path / "d.yaml", render(), "eip-guard-policy")).actions == {}


def _write(path: Path, objs: list[Obj], name: str) -> Path:
    path.write_text(one(objs, "ConfigMap", name)["data"]["policy.yaml"])
    return path


def test_a_policy_change_rolls_the_pods(render: RenderFn) -> None:
    def checksum(values: dict[str, Any]) -> str:
        meta = one(render(values), "Deployment")["spec"]["template"]["metadata"]
        return str(meta["annotations"]["checksum/policy"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"policy": {"rules": {"address-overlap": "warn"}}})


def test_schema_knows_exactly_the_rule_ids(chart: Any) -> None:
    rules = chart.schema["properties"]["policy"]["properties"]["rules"]
    listed = set(rules["propertyNames"]["enum"])
    assert listed == RULE_IDS, (
        "charts/eip-guard/values.schema.json policy.rules.propertyNames.enum must list every "
        f"rule id: add {sorted(RULE_IDS - listed)}, remove {sorted(listed - RULE_IDS)}"
    )


def test_helm_test_denies_an_eip_only_the_webhook_can_judge(render: RenderFn) -> None:
    objs = render()
    data = one(objs, "ConfigMap", "eip-guard-test")["data"]
    eip = yaml.safe_load(data["eip-in-own-pool.yaml"])
    assert eip["spec"]["interface"] == "can_reach:192.0.2.15"  # well-formed: CEL lets it pass
    assert "'(eip-guard rule can-reach-in-eip)'" in data["run.sh"]
    assert "--dry-run=server" in data["run.sh"]
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    labels = pod["metadata"]["labels"]
    service = one(objs, "Service")
    assert not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_service_monitor_scrapes_the_probe_port(render: RenderFn) -> None:
    assert not by_kind(render(), "ServiceMonitor")
    objs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"r": "p"}}}})
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["r"] == "p"
    (endpoint,) = monitor["spec"]["endpoints"]
    port = next(p for p in one(objs, "Service")["spec"]["ports"] if p["name"] == endpoint["port"])
    assert port["targetPort"] == "http-probe" and endpoint["path"] == "/metrics"


def test_network_policy_opens_the_webhook_port(render: RenderFn) -> None:
    assert not by_kind(render(), "NetworkPolicy")
    values, _ = SCENARIOS["network-policy"]
    policy = one(render(values), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    webhook, metrics = policy["ingress"]
    assert webhook == {"ports": [{"port": "https", "protocol": "TCP"}]}  # from anywhere
    assert metrics["from"] == values["networkPolicy"]["metricsFrom"]
    dns, api = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]


def test_network_policy_lets_prometheus_scrape_what_the_service_monitor_names(
    render: RenderFn,
) -> None:
    values, _ = SCENARIOS["network-policy-scraped"]
    objs = render(values)
    (endpoint,) = one(objs, "ServiceMonitor")["spec"]["endpoints"]
    service_port = next(
        p for p in one(objs, "Service")["spec"]["ports"] if p["name"] == endpoint["port"]
    )
    _, metrics = one(objs, "NetworkPolicy")["spec"]["ingress"]
    assert metrics["ports"] == [{"port": service_port["targetPort"], "protocol": "TCP"}]
    assert metrics["from"] == values["networkPolicy"]["metricsFrom"]


def test_agent_is_off_and_report_only_by_default(chart: Any) -> None:
    assert chart.values["agent"]["enabled"] is False
    assert chart.values["agent"]["speaker"] == "off"


def test_switching_from_cert_manager_to_self_can_avoid_its_secret(render: RenderFn) -> None:
    # cert-manager mode leaves Secrets behind that Helm does not own: by default self mode's
    # Secret has the serving one's name, which `helm upgrade` then refuses to adopt ...
    managed = render({"certificates": {"mode": "cert-manager"}})
    left = {o["spec"]["secretName"] for o in by_kind(managed, "Certificate")}
    assert one(render(), "Secret")["metadata"]["name"] in left
    # ... and certificates.self.secretName names another, everywhere self mode uses it.
    objs = render({"certificates": {"self": {"secretName": "eip-guard-self-tls"}}})
    assert one(objs, "Secret")["metadata"]["name"] == "eip-guard-self-tls" not in left
    (rule,) = one(objs, "Role", "eip-guard-tls")["rules"]
    assert rule["resourceNames"] == ["eip-guard-self-tls"]
    assert "--tls-secret=eip-guard-self-tls" in _container(objs)["args"]


# What the API server sends the webhook: its matchConditions, run by Google's CEL runtime as
# the API server runs them (all must be true; object and oldObject as the request has them).
_MATCH_ENV = cel.NewEnv(
    variables={name: cel.Type.DYN for name in ("object", "oldObject", "request", "authorizer")}
)
POOL = "192.0.2.10-192.0.2.20"


def _sent(hooks: list[Obj], op: str, new: Obj | None, old: Obj | None) -> Obj | None:
    """The entry that sends this request to the webhook, if any: the API server calls each
    entry whose rules match and whose matchConditions all hold."""
    data = {"object": new, "oldObject": old, "request": {"operation": op}, "authorizer": None}
    found = []
    for hook in hooks:
        if not any(op in rule["operations"] for rule in hook["rules"]):
            continue
        programs = [_MATCH_ENV.compile(c["expression"]) for c in hook.get("matchConditions", [])]
        if all(program.eval(data=data).value() is True for program in programs):
            found.append(hook)
    assert len(found) <= 1, "one request, one call"
    return found[0] if found else None


def _edited(obj: Obj, **metadata: Any) -> Obj:
    edited = copy.deepcopy(obj)
    edited["metadata"].update(metadata)
    return edited


@pytest.fixture(scope="module")
def hooks(render: RenderFn) -> list[Obj]:
    return list(one(render(), "ValidatingWebhookConfiguration")["webhooks"])


# A layer2 Eip whose can_reach IP is a node's: denied on CREATE, ratcheted on UPDATE.
BAD = eip("legacy", POOL, interface="can_reach:192.0.2.1", used={"192.0.2.10": "ns/svc"})
UNUSED = eip("spare", POOL, interface="eth0:1")
NODE = node("node1", "192.0.2.1")
METADATA_ONLY: dict[str, dict[str, Any]] = {
    "finalizer added": {"finalizers": ["finalizer.ipam.kubesphere.io/v1alpha1"]},
    "label added": {"labels": {"team": "net"}},
    "owner added": {"ownerReferences": [{"apiVersion": "v1", "kind": "x", "name": "y"}]},
    "being deleted": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": []},
}


@pytest.mark.parametrize("change", sorted(METADATA_ONLY))
def test_an_update_of_nothing_eip_guard_reads_never_waits_for_the_webhook(
    hooks: list[Obj], change: str
) -> None:
    # OpenELB adds and removes its finalizer with plain UPDATEs: while no replica answers (or
    # none is ready) under failurePolicy Fail, an Eip being deleted hung in Terminating.
    for old in (BAD, UNUSED, _edited(BAD, finalizers=["x"], labels={"a": "b"})):
        assert not _sent(hooks, "UPDATE", _edited(old, **METADATA_ONLY[change]), old), change


@pytest.mark.parametrize("change", sorted(METADATA_ONLY))
def test_what_the_webhook_no_longer_sees_it_always_allowed(change: str) -> None:
    # The oracle: the webhook's own answer to each skipped request, judged as it judges.
    source = StaticSource(build([NODE, BAD, UNUSED]))
    create = AdmissionRequest(uid="u", name="legacy", operation="CREATE", object=BAD)
    assert decide(create, source, DEFAULT_POLICY).response["allowed"] is False  # a bad Eip
    for old in (BAD, UNUSED):
        new = _edited(old, **METADATA_ONLY[change])
        request = AdmissionRequest(
            uid="u", name=old["metadata"]["name"], operation="UPDATE", object=new, oldObject=old
        )
        assert decide(request, source, DEFAULT_POLICY).response["allowed"] is True
    gone = AdmissionRequest(uid="u", name="spare", operation="DELETE", oldObject=UNUSED)
    answer = decide(gone, source, DEFAULT_POLICY).response
    assert answer["allowed"] is True and not answer.get("warnings")


def test_every_change_eip_guard_reads_is_still_reviewed(hooks: list[Obj]) -> None:
    assert _sent(hooks, "CREATE", BAD, None)
    changed_spec = copy.deepcopy(BAD)
    changed_spec["spec"]["interface"] = "can_reach:192.0.2.2"
    assert _sent(hooks, "UPDATE", changed_spec, BAD)
    bgp = eip("e", POOL, protocol="bgp", interface="eth0:1")
    assert _sent(hooks, "UPDATE", dict(bgp, spec={**bgp["spec"], "protocol": "layer2"}), bgp)
    overridden = _edited(BAD, annotations={"eip-guard.io/allow-rules": "can-reach-node-ip"})
    assert _sent(hooks, "UPDATE", overridden, BAD) and _sent(hooks, "UPDATE", BAD, overridden)
    bare = copy.deepcopy(BAD)
    del bare["metadata"]["annotations"]
    assert _sent(hooks, "UPDATE", _edited(bare, annotations={"a": "b"}), bare)
    assert not _sent(hooks, "UPDATE", _edited(bare, labels={"a": "b"}), bare)
    # Status, where a version has no status subresource: the rules read status.used.
    assert _sent(hooks, "UPDATE", dict(BAD, status={"used": {}}), BAD)
    # DELETE warns only of an Eip in use (status.used): that one is still reviewed.
    assert _sent(hooks, "DELETE", None, BAD)
    assert not _sent(hooks, "DELETE", None, UNUSED)
    assert not _sent(hooks, "DELETE", None, dict(UNUSED, status={"used": {}}))
    assert not _sent(hooks, "DELETE", None, None)


def test_only_the_delete_of_an_eip_in_use_goes_where_failure_is_ignored(hooks: list[Obj]) -> None:
    # Under failurePolicy Fail with no replica answering, deleting an Eip in use was refused
    # though its review could only warn.
    deleted = _sent(hooks, "DELETE", None, BAD)
    assert deleted is not None and deleted["failurePolicy"] == "Ignore"
    for op, new, old in (("CREATE", BAD, None), ("UPDATE", dict(BAD, status={"used": {}}), BAD)):
        judged = _sent(hooks, op, new, old)
        assert judged is not None and judged["failurePolicy"] == "Fail", op


def test_external_mode_takes_a_bundle_wrapped_as_base64_writes_it(render: RenderFn) -> None:
    # `base64 ca.crt` wraps at 76 columns, and a YAML block scalar adds a final newline:
    # the same bytes, laid out on lines. The API server wants them on one line.
    bundle = _b64(CA_PEM)
    wrapped = "\n".join(bundle[i : i + 76] for i in range(0, len(bundle), 76)) + "\n"
    assert "\n" in wrapped.strip()
    external = {"secretName": "my-webhook-tls", "caBundle": wrapped}
    vwc = one(render({"certificates": {"mode": "external", "external": external}}),
              "ValidatingWebhookConfiguration")  # fmt: skip
    assert [h["clientConfig"]["caBundle"] for h in vwc["webhooks"]] == [bundle] * 2
