"""The pure core: address model, inventory, rules. No I/O lives here."""
