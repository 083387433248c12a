"""Which detectors still use a Triton model: leases in the shared model repository folder.

Many detectors (an HPA's replicas, a rolling update's old and new pods) load the same entries on
one Triton. Triton counts nothing: one ``unload`` takes a model from everybody. So each detector
process holds a lease per entry it serves, an empty file
``<repository>/.visionloop/leases/<entry>/<holder>`` whose modification time it renews every
third of ``TRITON_LEASE_SECONDS``; the folder is the one every detector already shares with
Triton, so no other service is needed. A lease not renewed for ``TRITON_LEASE_SECONDS`` is
stale: its holder was killed.

- A detector releasing its last hold on an entry deletes its lease, and unloads the entry only
  when no live lease is left (a rolling update or scale-down never takes a model from another).
- Every detector, at each renewal, reaps: entries whose leases are all stale are unloaded, so a
  model nobody uses leaves Triton within about 1.4 x ``TRITON_LEASE_SECONDS`` of its last
  holder's death (while any detector serves from that repository; one that starts reaps soon after).
- Unloading happens on every instance behind ``TRITON_URL`` (``backends.triton.unload_everywhere``);
  entries the detector wrote itself are deleted from the folder too.

The decision "nobody uses it" is taken by whoever removes the entry's (empty) lease folder, so two
reapers never unload for the same reason twice. It can still race with a newcomer that writes its
lease just after: the newcomer's next inference then finds the model missing and loads it again
(``TritonBackend``), so races, clocks and pauses cost a reload, never a failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from pathlib import Path

from visionloop.runtime.logging import get_logger
from visionloop.runtime.tasks import cancel_and_wait, settled
from visionloop.server.detector.backends.triton import unload_everywhere
from visionloop.server.detector.triton_repository import STATE, remove_written_entry

log = get_logger(__name__)

# One holder per process: a restarted detector is a new holder, its predecessor's leases go stale.
HOLDER = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
RENEWALS_PER_LEASE = 3


class EntryLeases:
    """This process's leases on the entries of one repository served by one Triton, and the reaper."""

    def __init__(self, repository: Path, url: str, lease_seconds: float, holder: str = HOLDER) -> None:
        self.repository = repository
        self.url = url
        self.lease_seconds = lease_seconds
        self.holder = holder
        self.folder = repository / STATE / "leases"
        self._held: dict[str, int] = {}  # entry -> holds in this process (a swap holds two for a moment)
        self._task: asyncio.Task[None] | None = None

    def held(self) -> set[str]:
        return set(self._held)

    async def acquire(self, entry: str) -> None:
        """Hold ``entry``; the lease is on disk before this returns, so before the entry is loaded."""
        first = entry not in self._held
        self._held[entry] = self._held.get(entry, 0) + 1  # before the file: this process's reaper skips it
        if first:
            try:
                await asyncio.to_thread(self._write_lease, entry)
            except BaseException:
                self._held.pop(entry, None)
                raise
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew(), name="triton-leases")

    async def release(self, entry: str) -> None:
        """Drop one hold on ``entry``; the last one deletes the lease and unloads the entry if no
        other detector holds a live lease on it."""
        left = self._held.get(entry, 0) - 1
        if left > 0:
            self._held[entry] = left
            return
        self._held.pop(entry, None)
        if not self._held:
            await self.stop()
        await settled(self._let_go(entry))

    async def _let_go(self, entry: str) -> None:
        if await asyncio.to_thread(self._drop_lease, entry):
            await self._retire(entry, "no detector holds it")

    async def reap(self) -> list[str]:
        """Unload the entries whose leases are all stale; returns them."""
        # Settled: once their lease folders are gone, only this call unloads them, even if stopped.
        return await settled(self._reap())

    async def _reap(self) -> list[str]:
        unused = await asyncio.to_thread(self._stale_entries)
        for entry in unused:
            await self._retire(entry, "its leases expired")
        return unused

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and task.get_loop() is asyncio.get_running_loop():
            await cancel_and_wait([task])

    # --- the lease files (blocking) ---------------------------------------------------------------

    def _write_lease(self, entry: str) -> None:
        for _ in range(5):
            (self.folder / entry).mkdir(parents=True, exist_ok=True)
            try:
                (self.folder / entry / self.holder).touch()  # creates it, or renews its time
                return
            except FileNotFoundError:
                continue  # a reaper removed the empty folder in between: make it again
        raise OSError(f"cannot write the Triton lease {self.folder / entry / self.holder}")

    def _drop_lease(self, entry: str) -> bool:
        """Delete this holder's lease; True when the entry is now unused (its lease folder removed)."""
        (self.folder / entry / self.holder).unlink(missing_ok=True)
        return self._unused(entry)

    def _unused(self, entry: str) -> bool:
        """Delete the entry's stale leases; if none is left, remove the folder and return True."""
        folder = self.folder / entry
        now = time.time()
        try:
            leases = list(folder.iterdir())
        except FileNotFoundError:
            return False  # someone else decided already
        held = entry in self._held
        live = held
        for lease in leases:
            if held and lease.name == self.holder:
                continue  # renewed by this process, however late its last renewal ran
            try:
                age = now - lease.stat().st_mtime
            except FileNotFoundError:
                continue
            if age <= self.lease_seconds:
                live = True
            else:
                lease.unlink(missing_ok=True)
        if live:
            return False
        try:
            folder.rmdir()  # fails if a lease arrived meanwhile: then it is in use again
        except OSError:
            return False
        return True

    def _stale_entries(self) -> list[str]:
        try:
            entries = [path.name for path in self.folder.iterdir() if path.is_dir()]
        except FileNotFoundError:
            return []
        return [entry for entry in entries if self._unused(entry)]  # held ones only lose stale leases

    def _renew_all(self) -> None:
        for entry in list(self._held):
            self._write_lease(entry)

    # --- background -------------------------------------------------------------------------------

    async def _renew(self) -> None:
        period = self.lease_seconds / RENEWALS_PER_LEASE
        while self._held:
            await asyncio.sleep(period)
            try:
                await asyncio.to_thread(self._renew_all)
                await self.reap()
            except OSError as error:  # the shared folder hiccuped: the next round tries again
                log.warning("triton leases not renewed", folder=str(self.folder), reason=str(error))

    async def _retire(self, entry: str, reason: str) -> None:
        await unload_everywhere(self.url, entry)
        if not (self.folder / entry).exists():  # nobody took it up again meanwhile
            with contextlib.suppress(OSError):
                await asyncio.to_thread(remove_written_entry, self.repository, entry)
        log.info("triton model unloaded", triton_model=entry, reason=reason)


_registry: dict[tuple[Path, str], EntryLeases] = {}


def entry_leases(repository: Path, url: str, lease_seconds: float) -> EntryLeases:
    """The process's leases for ``repository`` served by the Triton at ``url`` (one per pair)."""
    key = (repository.resolve(), url)
    leases = _registry.get(key)
    if leases is None:
        leases = _registry[key] = EntryLeases(key[0], url, lease_seconds)
    leases.lease_seconds = lease_seconds
    return leases
