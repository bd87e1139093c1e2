"""eip-guard: keeps OpenELB Eips out of the can_reach/lo trap."""

__version__ = "0.1.0"
