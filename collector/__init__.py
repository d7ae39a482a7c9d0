"""gate-collector: Gate.io unified account data for brokers, into InfluxDB."""

__version__ = "0.1.0"
