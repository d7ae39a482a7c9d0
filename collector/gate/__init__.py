"""Everything the collector knows about Gate, without sockets (sans-IO) except broker.py."""
