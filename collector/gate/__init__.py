"""Everything the collector knows about Gate, without sockets (sans-IO) except the REST
client: broker.py, transport.py, paging.py."""
