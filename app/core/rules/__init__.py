"""Every rule of eip-guard, in one place, as pure functions of (Eip, old Eip, inventory).

``check`` is the one judgement used by the webhook, ``eip-guard check``, ``audit`` and live
mode's background audit: on UPDATE the candidate replaces its namesake, so the old version of
the Eip under review never conflicts with the new one.

- ``catalog``: every rule by id, and which only warn or cannot be overridden;
- ``can_reach``: the rules of ``spec.interface`` (the lo trap, NIC names);
- ``pools``: the rules of ``spec.address`` (what a pool must not hold);
- ``spec``: the other fields (schema, interface required, one default, immutable address);
- ``judgement``: ``check`` and ``audit``: policy, ratcheting and overrides;
- ``review`` and ``suggestion``: what the rules read and share, and a free can_reach IP.
"""

from app.core.rules.catalog import NOT_OVERRIDABLE, RULE_IDS, RULES, Rule
from app.core.rules.judgement import DEFAULT_POLICY, audit, check, in_use_notes, may_override

__all__ = [
    "DEFAULT_POLICY",
    "NOT_OVERRIDABLE",
    "RULES",
    "RULE_IDS",
    "Rule",
    "audit",
    "check",
    "in_use_notes",
    "may_override",
]
