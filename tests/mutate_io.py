"""Hand-made mutants of the per-account lifecycle's I/O modules (``make mutate-io``).

mutmut mutates the pure cores (``make mutate``); the I/O modules' tests need the
trio clock and fakes, so their mutants are written by hand: each is one exact text
of a file and what replaces it, a fault a person could make (or has made), named for
the behaviour it breaks. Each mutant is applied in place, alone, and only the fast
unit tests of its module run against it (seconds per mutant). The file's original
bytes are written back in a ``finally`` (SIGTERM and Ctrl-C included) and kept on
disk meanwhile, so the next run restores a file that a SIGKILL left mutated; a mutant
whose text is not found exactly once stops the run before anything changes.

    python -m tests.mutate_io            # every mutant
    python -m tests.mutate_io NAME ...   # the mutants whose name contains NAME
    python -m tests.mutate_io --list

A mutant is killed when its tests fail (or time out). A survivor is a test missing,
unless the mutant carries the reason it is equivalent (the code behaves the same);
only unexplained survivors fail the run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
# The original of the file being mutated (and, beside it, its path): see _run_one.
BACKUP: Final = ROOT / ".mutate_io.orig"
# A mutant's tests take a few seconds. One that spins (a busy loop never lets the
# autojump clock move, so no trio deadline fires) fails on pytest-timeout's TEST_TIMEOUT;
# TIMEOUT ends a run that hangs anyway.
TEST_TIMEOUT: Final = 20
TIMEOUT: Final = 120.0

RUNNER: Final = "collector/supervisor/runner.py"
TABLE: Final = "collector/supervisor/table.py"
SNAPSHOTS: Final = "collector/supervisor/snapshots.py"
SUPERVISOR: Final = "collector/supervisor/supervisor.py"
LIFECYCLE: Final = "collector/keys/lifecycle.py"
RELOAD: Final = "collector/app/reload.py"
DELIVERY: Final = "collector/sink/delivery.py"
BACKLOG: Final = "collector/sink/backlog.py"
SPOOL: Final = "collector/sink/spool.py"
WRITER: Final = "collector/sink/writer.py"
SESSION_CORE: Final = "collector/session/core.py"

T_RUNNER: Final = ("tests/unit/test_runner.py",)
T_LIFECYCLE: Final = ("tests/unit/test_key_lifecycle_unit.py",)
T_TABLE: Final = ("tests/unit/test_table.py",)
T_SCHEDULER: Final = ("tests/unit/test_scheduler.py",)
T_RELOAD: Final = ("tests/unit/test_refresh_reload.py",)
T_SUPERVISOR: Final = ("tests/unit/test_supervisor_loop.py",)
T_SESSION: Final = ("tests/unit/test_session_delivered.py",)
T_SINK: Final = ("tests/unit/test_delivery.py", "tests/unit/test_spool_unit.py")


@dataclass(frozen=True)
class Mutant:
    """One fault: in ``path``, ``old`` (found exactly once) becomes ``new``."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    # Why no test can kill it (the code behaves the same), when that is so.
    equivalent: str = ""

    @property
    def folder(self) -> str:
        """The room it is in: ``supervisor/``, ``keys/``, ``sink/``, ``session/``, ``app/``."""
        return self.path.split("/")[1] + "/"


MUTANTS: Final = [
    # -- supervisor/runner.py: the session loop, upkeep, rotation -----------------------
    Mutant(
        "runner: rotation stops the old session before the successor delivers",
        RUNNER,
        "            await delivered.wait()  # the successor's first point\n",
        "            pass\n",
        T_RUNNER,
    ),
    Mutant(
        "runner: the successor's first point never seen (no event in its stats)",
        RUNNER,
        "stats = SessionStats(delivered=delivered)",
        "stats = SessionStats()",
        T_RUNNER,
    ),
    Mutant(
        "runner: a successor that never delivers is waited for forever",
        RUNNER,
        "        with trio.move_on_after(self._successor_wait()):\n",
        "        with trio.move_on_after(float('inf')):\n",
        T_RUNNER,
    ),
    Mutant(
        "session: a delivered point does not set the rotation's event",
        SESSION_CORE,
        "            if stats.delivered is not None:\n                stats.delivered.set()\n",
        "",
        T_SESSION,
    ),
    Mutant(
        "session: the rotation's event set by an update with no point",
        SESSION_CORE,
        "        if records:\n            stats.points += len(records)\n"
        "            if stats.delivered is not None:\n                stats.delivered.set()\n",
        "        if stats.delivered is not None:\n            stats.delivered.set()\n"
        "        if records:\n            stats.points += len(records)\n",
        T_SESSION,
    ),
    Mutant(
        "runner: a crashing session restarted with no backoff",
        RUNNER,
        '        log.debug("session_crash_traceback", account=account_id, exc_info=exc)\n'
        "        await trio.sleep(delay)",
        '        log.debug("session_crash_traceback", account=account_id, exc_info=exc)\n'
        "        await trio.lowlevel.checkpoint()",
        T_RUNNER,
    ),
    Mutant(
        "runner: the crash backoff never grows",
        RUNNER,
        "                        crashes = 1 if stats.points > before else crashes + 1",
        "                        crashes = 1",
        T_RUNNER,
    ),
    Mutant(
        "runner: a key refused before delivering counts as working",
        RUNNER,
        "if stats.points > before:",
        "if stats.points >= before:",
        T_RUNNER,
    ),
    Mutant(
        "runner: after a rotation the slot's session is not the successor's",
        RUNNER,
        "        slot.stats, slot.session = stats, successor.session\n",
        "        slot.stats = stats\n",
        T_RUNNER,
    ),
    Mutant(
        "runner: a slot whose account is gone keeps running sessions",
        RUNNER,
        "                        if not await self._one_session(slot, stats, drive):\n"
        "                            return",
        "                        if not await self._one_session(slot, stats, drive):\n"
        "                            pass",
        T_RUNNER,
    ),
    Mutant(
        "runner: upkeep works without new data",
        RUNNER,
        "if seen is None or points <= seen:",
        "if seen is None or points < seen:",
        T_RUNNER,
    ),
    Mutant(
        "runner: upkeep keeps the refusal count",
        RUNNER,
        "        slot.key.refusals = 0\n",
        "",
        T_RUNNER,
    ),
    Mutant(
        "runner: a key due for rotation is never rotated",
        RUNNER,
        "rotate = stored is not None and self.provisioner.rotation_due_in(stored) == 0",
        "rotate = False",
        T_RUNNER,
    ),
    Mutant(
        "runner: rotation never stops the old session",
        RUNNER,
        "        await _stop(round_.drive)\n        round_.drive = await",
        "        round_.drive = await",
        T_RUNNER,
    ),
    Mutant(
        "runner: rotation drops the old session's counters",
        RUNNER,
        "        merge_counters(stats, slot.stats)\n",
        "",
        T_RUNNER,
    ),
    Mutant(
        "runner: rotation leaves the old key on Gate",
        RUNNER,
        "        slot.key.retire_pending = True\n        return True",
        "        return True",
        T_RUNNER,
    ),
    Mutant(
        "runner: rotations not counted",
        RUNNER,
        "                self.stats.key_rotations += 1\n"
        '                log.info("key_rotated", account=account_id)',
        '                log.info("key_rotated", account=account_id)',
        T_RUNNER,
    ),
    Mutant(
        "runner: a failed rotation not counted",
        RUNNER,
        "            self.stats.key_errors += 1\n",
        "",
        T_RUNNER,
    ),
    Mutant(
        "runner: no upkeep after the first piece of work",
        RUNNER,
        "        slot.upkeep_seen = slot.stats.points\n"
        "        self._arm_upkeep(slot, round_, nursery, UPKEEP_INTERVAL)",
        "        slot.upkeep_seen = slot.stats.points",
        T_RUNNER,
    ),
    Mutant(
        "runner: the upkeep outlives its slot",
        RUNNER,
        "            if round_.upkeep is not None:  # armed again by the next round\n"
        "                round_.upkeep.cancel()",
        "            pass",
        T_RUNNER,
    ),
    Mutant(
        "runner: the first upkeep only after ten intervals",
        RUNNER,
        "self._arm_upkeep(slot, round_, nursery, self.rng.uniform(0, UPKEEP_INTERVAL))",
        "self._arm_upkeep(slot, round_, nursery, 10 * UPKEEP_INTERVAL + "
        "self.rng.uniform(0, UPKEEP_INTERVAL))",
        T_RUNNER,
    ),
    Mutant(
        "runner: a restart leaves the session running",
        RUNNER,
        "        self._round.cancel()\n",
        "        pass\n",
        T_RUNNER,
    ),
    Mutant(
        "runner: a restart drops the counters",
        RUNNER,
        "        round_ = _Round(drive)\n",
        "        round_ = _Round(drive)\n        slot.stats = SessionStats()\n",
        T_RUNNER,
    ),
    # -- keys/lifecycle.py: create, grace, replace, retire -----------------------------
    Mutant(
        "lifecycle: a READ_ONLY refusal answered with a new key",
        LIFECYCLE,
        "if kind in CONFIG_REFUSALS:",
        "if kind in (Refusal.IP, Refusal.LOCKED):",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: an IP refusal answered with a new key",
        LIFECYCLE,
        "if kind in CONFIG_REFUSALS:",
        "if kind in (Refusal.PERMISSION, Refusal.LOCKED):",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a key replaced twice",
        LIFECYCLE,
        "if self.store.get(account_id) == stored:",
        "if True:",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a config refusal retried at once",
        LIFECYCLE,
        "hint=refusal_hint(kind),\n            )\n"
        "            await trio.sleep(delay)\n            return True",
        "hint=refusal_hint(kind),\n            )\n            return True",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: refusals in a row not counted",
        LIFECYCLE,
        "        key.refusals += 1\n",
        "",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: config refusals not counted",
        LIFECYCLE,
        "            self.stats.key_config_refusals += 1\n",
        "",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a fresh key's twins never retired",
        LIFECYCLE,
        "                await self.provisioner.create(account_id)\n"
        "                key.retire_pending = True",
        "                await self.provisioner.create(account_id)",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: an account with a key still shown keyless",
        LIFECYCLE,
        "        self.stats.keyless.pop(account_id, None)\n",
        "",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: an account gone while keyless not reported gone",
        LIFECYCLE,
        '            except NotFoundError:\n                self.gone(key, "account gone")\n'
        "                return None",
        "            except NotFoundError:\n                return None",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: the creation backoff never grows",
        LIFECYCLE,
        "retried too\n                failures += 1",
        "retried too\n                failures = 1",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: no grace when Gate cannot be asked",
        LIFECYCLE,
        "            return True  # cannot tell now",
        "            return False  # cannot tell now",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a key deleted on Gate still given the grace",
        LIFECYCLE,
        "            return await self.provisioner.exists_on_gate(stored)",
        "            return True",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: every refused key given the grace",
        LIFECYCLE,
        "        if not self.provisioner.in_grace(stored):\n            return False",
        "        if False:\n            return False",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: the grace retried at the replacement's pace",
        LIFECYCLE,
        "delay = backoff_delay(key.refusals, *GRACE_BACKOFF, self.rng)",
        "delay = backoff_delay(key.refusals, *REPLACE_BACKOFF, self.rng)",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a disabled account's key replaced",
        LIFECYCLE,
        "                if not current.enabled:",
        "                if False:",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a clock refusal answered with a new key",
        LIFECYCLE,
        "                if kind is Refusal.CLOCK:",
        "                if False:",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: replacements not counted",
        LIFECYCLE,
        "                    self.stats.key_replacements += 1\n",
        "",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: the replaced key never retired",
        LIFECYCLE,
        "                key.retire_pending = True\n                return True",
        "                return True",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: the replacement backoff never grows",
        LIFECYCLE,
        "                # The old key stays stored: the account is never left without one.\n"
        "                failures += 1",
        "                # The old key stays stored: the account is never left without one.\n"
        "                failures = 1",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: an account gone during a replacement keeps its slot",
        LIFECYCLE,
        '            except NotFoundError:\n                self.gone(key, "account gone")\n'
        "                return False",
        "            except NotFoundError:\n                return True",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: retire deletes at every call",
        LIFECYCLE,
        "        if not key.retire_pending:\n            return\n",
        "",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a retirement done stays pending",
        LIFECYCLE,
        "            key.retire_pending = False\n",
        "",
        T_LIFECYCLE,
    ),
    Mutant(
        "lifecycle: a failed retirement not counted",
        LIFECYCLE,
        "        except GateError as exc:  # tried again at the next upkeep\n"
        "            self.stats.key_errors += 1",
        "        except GateError as exc:  # tried again at the next upkeep\n            pass",
        T_LIFECYCLE,
    ),
    # -- supervisor/table.py: which accounts have a slot, where ------------------------
    Mutant(
        "table: running sessions do not count against the capacity",
        TABLE,
        "room = max(0, self.capacity - len(self.slots))",
        "room = self.capacity",
        T_TABLE,
    ),
    Mutant(
        "table: accounts beyond the capacity not reported",
        TABLE,
        "        for account_id in new[room:]:  # no key for an account that gets no session\n"
        "            self._over_capacity(account_id)\n",
        "",
        T_TABLE,
    ),
    Mutant(
        "table: an account beyond the capacity gets a key",
        TABLE,
        "        fits = new[:room]",
        "        fits = new",
        T_TABLE,
    ),
    Mutant(
        "table: over capacity logged at every discovery",
        TABLE,
        "        if account_id in self._stats.over_capacity:\n            return\n",
        "",
        T_TABLE,
    ),
    Mutant(
        "table: a stopped session keeps its address",
        TABLE,
        "        if slot is not None:\n            self._per_address[slot.local_address] -= 1",
        "        if slot is not None:",
        T_TABLE,
    ),
    Mutant(
        "table: the most used address picked",
        TABLE,
        "address, count = min(used.items(), key=lambda item: item[1])",
        "address, count = max(used.items(), key=lambda item: item[1])",
        T_TABLE,
    ),
    Mutant(
        "table: an address one short of its limit taken as full",
        TABLE,
        "return count < limit, address",
        "return count < limit - 1, address",
        T_TABLE,
    ),
    Mutant(
        "table: an account that got a session stays over capacity",
        TABLE,
        "        self._stats.over_capacity.discard(account.gate_id)\n        # A fresh key",
        "        # A fresh key",
        T_TABLE,
    ),
    Mutant(
        "table: a failed key creation not shown keyless",
        TABLE,
        "                self._stats.keyless[account_id] = label(wanted[account_id])",
        "                pass",
        T_TABLE,
    ),
    Mutant(
        "table: a keyless account never probed again",
        TABLE,
        "keyless = [a for a in self._stats.keyless if a in self.slots and a in wanted]",
        "keyless: list[int] = []",
        T_TABLE,
    ),
    Mutant(
        "table: a key created for a keyless slot leaves its twins",
        TABLE,
        "self.slots[account_id].key.retire_pending |= account_id in report.created",
        "pass",
        T_TABLE,
    ),
    Mutant(
        "table: a fresh key's twins never retired",
        TABLE,
        "fresh_key=account_id in report.created",
        "fresh_key=False",
        T_TABLE,
    ),
    Mutant(
        "table: a keyless account that left still shown",
        TABLE,
        "        for gone in [a for a in self._stats.keyless if a not in wanted]:\n"
        "            del self._stats.keyless[gone]\n",
        "",
        T_TABLE,
    ),
    Mutant(
        "table: gone stops the slot of a newer key",
        TABLE,
        "if slot is None or slot.key is not key:",
        "if slot is None:",
        T_TABLE,
    ),
    Mutant(
        "table: gone keeps the account's address",
        TABLE,
        "        del self.slots[account_id]\n        self._per_address[slot.local_address] -= 1",
        "        del self.slots[account_id]",
        T_TABLE,
    ),
    Mutant(
        "table: a stopped account still read by snapshots",
        TABLE,
        "            self._stop_task(account_id)\n        if self._snapshots is not None:\n"
        "            self._snapshots.remove(account_id)",
        "            self._stop_task(account_id)",
        T_TABLE,
    ),
    Mutant(
        "table: restart_all leaves the old sessions running",
        TABLE,
        "        for task in self._tasks.values():\n            task.restart()\n",
        "        for task in self._tasks.values():\n            pass\n",
        T_TABLE,
    ),
    Mutant(
        "table: a slot started during a restart_all misses the restart",
        TABLE,
        "        if self._restarts != restarts:\n            task.restart()\n",
        "",
        T_TABLE,
    ),
    Mutant(
        "table: a slot gone while it was being started keeps running",
        TABLE,
        "        if self.slots.get(account.gate_id) is not slot:\n            task.stop()\n",
        "        if self.slots.get(account.gate_id) is not slot:\n",
        T_TABLE,
    ),
    Mutant(
        "table: a currency change reaches no session",
        TABLE,
        "                slot.session.change_currencies(gate)",
        "                pass",
        T_TABLE,
    ),
    # -- supervisor/snapshots.py: the snapshot scheduler ---------------------------------
    Mutant(
        "scheduler: no instance-wide pace",
        SNAPSHOTS,
        "self._next_slot = max(now, self._next_slot) + self._spacing",
        "self._next_slot = now",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: one account read twice at once",
        SNAPSHOTS,
        "ready = status.started_at + MIN_ACCOUNT_SPACING",
        "ready = status.started_at",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: a request for an account not scheduled is taken",
        SNAPSHOTS,
        "if account in self._accounts and account not in self._urgent:",
        "if account not in self._urgent:",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: a request waits for the next periodic read",
        SNAPSHOTS,
        "            self._urgent[account] = reason\n            self._wake.set()",
        "            self._urgent[account] = reason",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: an urgent read leaves the periodic one where it was",
        SNAPSHOTS,
        "                del self._urgent[account]\n                self._queue.pop(account)",
        "                del self._urgent[account]",
        T_SCHEDULER,
        equivalent="the periodic entry left behind is never taken: while the urgent read is "
        "in flight _pick skips the account, and _settle then puts a new due time, which "
        "makes the old heap entry stale (the queue's lazy cleanup)",
    ),
    Mutant(
        "scheduler: a removed account is still read",
        SNAPSHOTS,
        "        self._urgent.pop(account, None)\n        self._queue.pop(account)",
        "        self._urgent.pop(account, None)",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: a read in flight never frees its place",
        SNAPSHOTS,
        "            self._in_flight.release()\n",
        "",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: the first periodic read at once, not at a random offset",
        SNAPSHOTS,
        "trio.current_time() + self._rng.uniform(0, self._interval)",
        "trio.current_time()",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: periodic reads with no interval configured",
        SNAPSHOTS,
        "        if self._interval > 0:\n            self._queue.put",
        "        if True:\n            self._queue.put",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: a success keeps the failure count",
        SNAPSHOTS,
        "status.failures, status.last_at = 0, trio.current_time()",
        "status.last_at = trio.current_time()",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: an account not in unified mode retried at the interval",
        SNAPSHOTS,
        "self._settle(account, status, STATE_NOT_UNIFIED, str(exc), SLOW_RETRY)",
        "self._settle(account, status, STATE_NOT_UNIFIED, str(exc), self._interval)",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: IP_FORBIDDEN taken for a passing failure",
        SNAPSHOTS,
        "if exc.refusal in CONFIG_REFUSALS:",
        'if getattr(exc.refusal, "value", "") == "permission":',
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: every refusal taken for a missing permission",
        SNAPSHOTS,
        "if exc.refusal in CONFIG_REFUSALS:",
        "if True:",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: a body of another account written",
        SNAPSHOTS,
        "if result.user_id is not None and result.user_id != account:",
        "if False:",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: failures not counted",
        SNAPSHOTS,
        "            status.failed += 1\n",
        "",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: a keyless account retried with the short backoff",
        SNAPSHOTS,
        "delay = wait if wait is not None else backoff_delay(",
        "delay = backoff_delay(",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: the retry backoff never grows",
        SNAPSHOTS,
        "        status.failures += 1\n",
        "",
        T_SCHEDULER,
    ),
    Mutant(
        "scheduler: snapshot points not seen by the totals",
        SNAPSHOTS,
        "                self._observe(result.points)",
        "                pass",
        T_SCHEDULER,
    ),
    # -- sink/: delivery, backlog, spool, writer ------------------------------------------
    Mutant(
        "delivery: memory spilled to disk on any single failure after the first outage",
        DELIVERY,
        "        self._failing_since = None\n        if failures:",
        "        if failures:",
        T_SINK,
    ),
    Mutant(
        "delivery: spilled on the first failure",
        DELIVERY,
        "if may_spill and self.outage_is_long(ahead=delay):",
        "if may_spill:",
        T_SINK,
    ),
    Mutant(
        "delivery: the spill waits past spool_after (the coming wait not looked ahead)",
        DELIVERY,
        "return trio.current_time() + ahead - since >= self.settings.spool_after",
        "return trio.current_time() - since >= self.settings.spool_after",
        T_SINK,
    ),
    Mutant(
        "delivery: an outage spills only the batch being retried",
        DELIVERY,
        "self._backlog.spill([lines, *self._backlog.batcher.drain()])",
        "self._backlog.spill([lines])",
        T_SINK,
    ),
    Mutant(
        "delivery: the shutdown flush spills",
        DELIVERY,
        "            self._account(await self._send(batch, None, may_spill=False))",
        "            self._account(await self._send(batch, None, may_spill=True))",
        T_SINK,
    ),
    Mutant(
        "delivery: an outage with no spool counted as long",
        DELIVERY,
        "        if since is None or self._backlog.spool is None:",
        "        if since is None:",
        T_SINK,
    ),
    Mutant(
        "delivery: a split batch loses its second half",
        DELIVERY,
        "return (first or Settled()) + (second or Settled())",
        "return first or Settled()",
        T_SINK,
    ),
    Mutant(
        "delivery: written points not counted",
        DELIVERY,
        "            self._stats.points_written += settled.written\n",
        "",
        T_SINK,
    ),
    Mutant(
        "delivery: a replayed spool file never removed",
        DELIVERY,
        "                await backlog.spool_call(spool.remove, entry)\n",
        "",
        T_SINK,
    ),
    Mutant(
        "delivery: the spool never replayed",
        DELIVERY,
        "if spool is not None and entry is not None:",
        "if False:",
        T_SINK,
    ),
    Mutant(
        "delivery: write errors not counted",
        DELIVERY,
        "            self._stats.write_errors += 1\n",
        "",
        T_SINK,
    ),
    Mutant(
        "delivery: a retry with no backoff",
        DELIVERY,
        "            await trio.sleep(delay)\n",
        "            await trio.sleep(0)\n",
        T_SINK,
    ),
    Mutant(
        "backlog: no memory bound",
        BACKLOG,
        "        self.spill(self.batcher.overflow(held))\n",
        "",
        T_SINK,
    ),
    Mutant(
        "backlog: points past the bound with no spool dropped uncounted",
        BACKLOG,
        "            self._stats.dropped_by_reason[REASON_BUFFER_FULL] += points\n",
        "",
        T_SINK,
    ),
    Mutant(
        "backlog: spill_now writes only the oldest spilled batch",
        BACKLOG,
        "        while self._to_spill and self.spool is not None:",
        "        if self._to_spill and self.spool is not None:",
        T_SINK,
    ),
    Mutant(
        "backlog: the deliverer not woken after a cut",
        BACKLOG,
        "        self.spill(self.batcher.overflow(held))\n        self._work.set()",
        "        self.spill(self.batcher.overflow(held))",
        T_SINK,
    ),
    Mutant(
        "spool: a full disk no longer evicting the oldest spool file",
        SPOOL,
        "victim = self._oldest_unpinned() if exc.errno in _SPACE_ERRORS else None",
        "victim = None",
        T_SINK,
    ),
    Mutant(
        "spool: any disk error evicts old batches",
        SPOOL,
        "victim = self._oldest_unpinned() if exc.errno in _SPACE_ERRORS else None",
        "victim = self._oldest_unpinned()",
        T_SINK,
    ),
    Mutant(
        "spool: the bound evicts one batch at most",
        SPOOL,
        "        while self.bytes > self.max_bytes:",
        "        if self.bytes > self.max_bytes:",
        T_SINK,
    ),
    Mutant(
        "spool: the batch being sent evicted",
        SPOOL,
        "return next((e for e in self._entries if e.seq != self._pinned), None)",
        "return next(iter(self._entries), None)",
        T_SINK,
    ),
    Mutant(
        "spool: a removed batch stays pinned",
        SPOOL,
        "            entry.path.unlink(missing_ok=True)\n"
        "        if self._pinned == entry.seq:\n            self._pinned = None\n",
        "            entry.path.unlink(missing_ok=True)\n",
        T_SINK,
        equivalent="_forget already unpins an entry it removes; an entry already gone has a "
        "seq no queued entry carries, so keeping it pinned protects nothing",
    ),
    Mutant(
        "spool: torn writes left after a restart",
        SPOOL,
        "                path.unlink(missing_ok=True)  # a write cut short by a crash",
        "                pass",
        T_SINK,
    ),
    Mutant(
        "spool: a restart reuses sequence numbers",
        SPOOL,
        "        self._next_seq = max(self._next_seq, entry.seq + 1)\n",
        "",
        T_SINK,
    ),
    Mutant(
        "spool: unreadable files not counted",
        SPOOL,
        "        self.dropped[REASON_CORRUPT] += entry.points\n",
        "",
        T_SINK,
    ),
    Mutant(
        "spool: evicted points not counted",
        SPOOL,
        "        self.dropped[reason] += points\n",
        "",
        T_SINK,
    ),
    Mutant(
        "spool: peek reads the queue while a worker thread changes it",
        SPOOL,
        "        with self.lock:\n            return self._entries[0] if self._entries else None",
        "        return self._entries[0] if self._entries else None",
        T_SINK,
    ),
    Mutant(
        "spool: drops hands out the live counter",
        SPOOL,
        "        with self.lock:\n            return Counter(self.dropped)",
        "        return self.dropped",
        T_SINK,
    ),
    Mutant(
        "writer: at shutdown what is left is lost instead of spooled",
        WRITER,
        "            await self._backlog.spool_all(self._shutdown_timeout)",
        "            pass",
        T_SINK,
    ),
    Mutant(
        "writer: at shutdown nothing is written",
        WRITER,
        "                await self._delivery.write_out()",
        "                pass",
        T_SINK,
    ),
    Mutant(
        "backlog: spooling at shutdown waits for a hung disk",
        BACKLOG,
        "await self.spill_now(abandon=True)",
        "await self.spill_now(abandon=False)",
        T_SINK,
    ),
    Mutant(
        "backlog: spooling at shutdown has no deadline",
        BACKLOG,
        "        with trio.move_on_after(within):\n            await self.spill_now(abandon=True)",
        "        await self.spill_now(abandon=True)",
        T_SINK,
    ),
    Mutant(
        "writer: at shutdown the batch in flight is lost",
        WRITER,
        "            self._backlog.put_back()  # a write cut off by the deadline",
        "            pass",
        T_SINK,
    ),
    # -- SIGHUP: accounts.refresh_interval (app/reload.py, supervisor/supervisor.py) ------
    Mutant(
        "reload: accounts.refresh_interval not applied on SIGHUP (not a live key)",
        RELOAD,
        '        ("accounts", "refresh_interval"),\n',
        "",
        T_RELOAD,
    ),
    Mutant(
        "reload: accounts.refresh_interval not applied on SIGHUP (sessions not told)",
        RELOAD,
        'if change.changed("gate") or change.changed("accounts"):',
        'if change.changed("gate"):',
        T_RELOAD,
    ),
    Mutant(
        "supervisor: accounts.refresh_interval not applied on SIGHUP (read once at start)",
        SUPERVISOR,
        "            while True:\n"
        "                await trio.sleep(self._settings.accounts.refresh_interval)",
        "            interval = self._settings.accounts.refresh_interval\n"
        "            while True:\n"
        "                await trio.sleep(interval)",
        T_RELOAD,
    ),
    Mutant(
        "supervisor: a reload keeps the old settings",
        SUPERVISOR,
        "old_gate, self._settings = self._settings.gate, settings",
        "old_gate = self._settings.gate",
        T_RELOAD,
    ),
    # -- supervisor/supervisor.py: discovery, the shard, SIGHUP's session changes ----------
    Mutant(
        "supervisor: a first discovery that fails is not a start error",
        SUPERVISOR,
        'raise StartupError(f"cannot list sub-accounts at start: {exc}") from None',
        "return",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: a failed discovery ends the loop",
        SUPERVISOR,
        'log.error("discovery_failed", error=str(exc), hint="retrying at next refresh")\n',
        'log.error("discovery_failed", error=str(exc), hint="retrying at next refresh")\n'
        "                    return\n",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: failed discoveries not counted",
        SUPERVISOR,
        "                    self.stats.discovery_errors += 1\n",
        "",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: disabled accounts get a session",
        SUPERVISOR,
        "if a.enabled and owns(shard, a.gate_id)}",
        "if owns(shard, a.gate_id)}",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: accounts of other shards get a session",
        SUPERVISOR,
        "if a.enabled and owns(shard, a.gate_id)}",
        "if a.enabled}",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: discoveries not counted",
        SUPERVISOR,
        "        self.stats.discoveries += 1\n",
        "",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: new currencies not passed to the sessions",
        SUPERVISOR,
        "            self._table.change_currencies(settings.gate)",
        "            pass",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: a new ws_url leaves the sessions on the old one",
        SUPERVISOR,
        "            self._table.restart_all()",
        "            pass",
        T_SUPERVISOR,
    ),
    Mutant(
        "supervisor: later discoveries not reconciled",
        SUPERVISOR,
        "        await self._reconcile(await self._discover())",
        "        await self._discover()",
        T_SUPERVISOR,
    ),
]


class _Stop(Exception):
    """SIGTERM: unwinds like Ctrl-C so that every ``finally`` restores its file."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Stop(f"signal {signum}")


def _pytest(tests: tuple[str, ...]) -> tuple[bool, float]:
    """(passed?, seconds) of one quiet pytest run of ``tests``; a timeout fails."""
    start = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    command += ["-o", f"timeout={TEST_TIMEOUT}", *tests]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - start
    return done.returncode == 0, time.monotonic() - start


def _check(mutants: list[Mutant]) -> None:
    """Stop before changing anything when a mutant's text is not found exactly once."""
    stale = [
        f"  {m.name}: found {(ROOT / m.path).read_text().count(m.old)} times in {m.path}"
        for m in mutants
        if (ROOT / m.path).read_text().count(m.old) != 1
    ]
    if stale:
        sys.exit("mutants whose text is not found exactly once (update them):\n" + "\n".join(stale))


def _restore_left_over() -> None:
    """Put back a file a run killed outright (SIGKILL, power) left mutated."""
    if not BACKUP.exists():
        return
    target = ROOT / BACKUP.with_suffix(".path").read_text()
    target.write_bytes(BACKUP.read_bytes())
    print(f"restored {target.relative_to(ROOT)}, left mutated by a run that was killed")
    BACKUP.unlink()
    BACKUP.with_suffix(".path").unlink()


def _run_one(mutant: Mutant) -> tuple[bool, float]:
    """(killed?, seconds): apply ``mutant``, run its tests, restore the file whatever happens."""
    path = ROOT / mutant.path
    original = path.read_bytes()
    # The original goes to disk first: even a SIGKILL between here and the restore
    # is undone by the next run (_restore_left_over).
    BACKUP.with_suffix(".path").write_text(mutant.path)
    BACKUP.write_bytes(original)
    try:
        path.write_text(original.decode().replace(mutant.old, mutant.new, 1))
        passed, seconds = _pytest(mutant.tests)
    finally:
        path.write_bytes(original)
        BACKUP.unlink()
        BACKUP.with_suffix(".path").unlink()
    return not passed, seconds


def main(argv: list[str]) -> int:
    """Run the mutants named in ``argv`` (all by default); 1 when one survived unexplained."""
    if argv[:1] == ["--list"]:
        for mutant in MUTANTS:
            print(f"{mutant.folder:12} {mutant.name}")
        return 0
    _restore_left_over()
    chosen = [m for m in MUTANTS if not argv or any(a in m.name for a in argv)]
    _check(chosen)
    signal.signal(signal.SIGTERM, _on_term)
    suites = sorted({t for m in chosen for t in m.tests})
    passed, seconds = _pytest(tuple(suites))
    if not passed:
        print(f"the tests fail before any mutant ({' '.join(suites)}): fix them first")
        return 2
    print(f"clean run: {len(suites)} test files pass ({seconds:.1f} s)")
    killed: Counter[str] = Counter()
    total: Counter[str] = Counter()
    survivors: list[Mutant] = []
    for mutant in chosen:
        dead, seconds = _run_one(mutant)
        total[mutant.folder] += 1
        killed[mutant.folder] += dead
        if not dead:
            survivors.append(mutant)
        verdict = "killed  " if dead else "EQUIVAL." if mutant.equivalent else "SURVIVED"
        print(f"{verdict} {seconds:5.1f} s  {mutant.name}", flush=True)
    print()
    for folder in sorted(total):
        share = 100.0 * killed[folder] / total[folder]
        print(f"{folder:12} {killed[folder]:3} of {total[folder]:3} killed ({share:.1f} %)")
    print(f"{'all':12} {sum(killed.values()):3} of {sum(total.values()):3} killed")
    for mutant in survivors:
        why = f"equivalent: {mutant.equivalent}" if mutant.equivalent else "A TEST IS MISSING"
        print(f"survivor: {mutant.name} ({mutant.path}): {why}")
    for mutant in chosen:
        if mutant.equivalent and mutant not in survivors:
            print(f"killed, though listed as equivalent (update the list): {mutant.name}")
    # Only a survivor nobody explained fails the run.
    return 1 if any(not m.equivalent for m in survivors) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
