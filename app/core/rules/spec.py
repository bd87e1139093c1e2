"""The rules of the Eip's other fields: the CRD's schema, an interface for layer2 and vip,
one default Eip, and an address that never changes."""

from __future__ import annotations

from collections.abc import Iterator

from app.core.addresses import quoted
from app.core.eips import DEFAULT_EIP_ANNOTATION
from app.core.interfaces import NoInterface
from app.core.rules.review import ADDRESS, INTERFACE, PROTOCOL, Review, erred, first_of, some_of
from app.core.verdict import Violation


def spec_schema(r: Review) -> Iterator[Violation]:
    for error in r.candidate.field_errors:
        yield Violation(
            "spec-schema",
            error.field,
            error.value,
            f"{error.detail}. The Eip CRD's schema does not allow it, so the API server "
            f"rejects the Eip before any webhook sees it. {error.advice}",
            error.detail,
        )


def interface_required(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    if (
        eip.speaks_layer2
        and isinstance(eip.interface, NoInterface)
        and not erred(r, INTERFACE)
        and not erred(r, PROTOCOL)  # vip in a v1alpha1 Eip: the schema rule says it all
    ):
        do = (
            # v1alpha1 has no such field (domain.md): advice to set it could not be followed.
            "A network.kubesphere.io/v1alpha1 Eip has no spec.interface: write this Eip as "
            "network.kubesphere.io/v1alpha2, with a NIC name or can_reach:<the node gateway "
            "IP> in spec.interface."
            if eip.v1alpha1
            else "Set a NIC name or can_reach:<the node gateway IP>."
        )
        yield Violation(
            "interface-required",
            INTERFACE,
            "",
            "if protocol is layer2 or vip, interface should not be empty: the speaker needs "
            f"a NIC to answer ARP/NDP on. {do}",
            "protocol layer2/vip needs spec.interface",
        )


def default_unique(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    if not eip.is_default:
        return
    others = [n for n in r.inventory.default_eips if n != eip.name]
    if others:
        yield Violation(
            "default-eip-unique",
            f"metadata.annotations[{DEFAULT_EIP_ANNOTATION}]",
            "true",
            f"already exists a default EIP: {some_of(others)}. OpenELB picks one at random "
            "for Services that name no pool. Remove the annotation here or there.",
            f"already exists a default EIP: {first_of(others)}",
        )


def address_immutable(r: Review) -> Iterator[Violation]:
    if r.old is not None and r.old.address_text != r.candidate.address_text:
        yield Violation(
            "address-immutable",
            ADDRESS,
            r.candidate.address_text,
            f"the address field is not allowed to be modified (was {quoted(r.old.address_text)}): "
            "OpenELB keeps the IPs it handed out. Create a new Eip and move Services to it.",
            "the address field is not allowed to be modified",
        )
