"""``gate-collector keys list|repair``: look at and mend the key store (never shows secrets)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from collector.config import load_settings
from collector.keys.repair import RepairReport, repair_store
from collector.keys.store import STORE_NAME, KeyStore, fernet_of


def run(args: argparse.Namespace) -> int:
    """Run ``keys list`` or ``keys repair``; KeyStoreError/ConfigError say what is wrong."""
    settings = load_settings(args.config)
    master = settings.state.master_key
    master_key = master.get_secret_value() if master else None
    fernet_of(master_key)  # no master key: the same plain error as the daemon's
    path = settings.state.path / STORE_NAME
    if not path.exists():
        print(f"no key store at {path} yet: the collector creates it at its first start")
        return 0
    if args.keys_command == "repair":
        _print_repair(path, repair_store(path, master_key))
        return 0
    _print_keys(KeyStore(path, master_key))
    return 0


def _print_keys(store: KeyStore) -> None:
    rows = sorted(store.all(), key=lambda k: k.user_id)
    print(f"{'USER_ID':<12}  {'KEY':<34}  STORED (UTC)")
    for key in rows:
        stored = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(key.created_at))
            if key.created_at
            else "-"
        )
        print(f"{key.user_id:<12}  {key.key:<34}  {stored}")
    print(f"{len(rows)} keys in {store.path}")


def _print_repair(path: Path, report: RepairReport) -> None:
    if not report.changed:
        print(f"{path} is intact: {report.kept} keys, nothing to repair")
        return
    print(f"repaired {path}: kept {report.kept} keys; the old file is {report.backup}")
    for bad in report.bad:
        about = f"account {bad.account}" if bad.account is not None else "account unknown"
        print(f"  line {bad.line} unreadable ({bad.why}): {about}")
    if report.lost_accounts:
        lost = ", ".join(str(a) for a in report.lost_accounts)
        print(f"lost their key: {lost}; they get a new one at the next start")
    if any(bad.account is None for bad in report.bad):
        print(
            "an unreadable line named no account: `gate-collector accounts --config F` "
            "shows which enabled accounts have no stored key (they get one at the next start)"
        )
