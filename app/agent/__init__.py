"""The node agent: NIC resolution without the lo trap, and the layer2 speaker."""
