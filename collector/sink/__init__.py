"""Batches of points to InfluxDB: the pure write policy and batcher, the spool, the loop."""
