"""Tools for tests, demos and builds: the Gate simulator, a local InfluxDB, queries, dashboards."""
