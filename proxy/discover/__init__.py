"""Find the coding agents on a machine and route them through Airlock (``airlock agents``)."""
