"""Keys: the encrypted store (store.py) and the lifecycle of per-account keys (provision.py)."""

from collector.keys.provision import (
    READ_ONLY_PERMS,
    KeyPolicy,
    KeyProvisioner,
    ProvisionReport,
    instance_id,
    owner_name,
)
from collector.keys.store import (
    STORE_NAME,
    KeyStore,
    KeyStoreCorrupt,
    KeyStoreError,
    KeyStoreWriteError,
    StoredKey,
    generate_master_key,
)

__all__ = [
    "READ_ONLY_PERMS",
    "STORE_NAME",
    "KeyPolicy",
    "KeyProvisioner",
    "KeyStore",
    "KeyStoreCorrupt",
    "KeyStoreError",
    "KeyStoreWriteError",
    "ProvisionReport",
    "StoredKey",
    "generate_master_key",
    "instance_id",
    "owner_name",
]
