"""`swim demo`: a five-member cluster on this machine, a crash, a rejoin, a failing
health check, a user event, and the placement ring through all of it.

Starts real `swim agent` processes on loopback (local profile, free ports), each with a
script health check, and shows the member table and the placement ring (`swim.ring`,
built from the first agent's member list as every member would build it) with the keys
each member owns out of `DEMO_KEYS`. It SIGKILLs one member and reports when the first
agent's ring dropped it and which keys moved where (only the dead member's), when the
others suspect it and declare it failed; restarts it and shows it rejoin and its keys
move back; makes another member's health check fail, which takes it off the ring (its
keys move) while it stays alive, then pass again; broadcasts a user event and shows it
arrive; then stops every process it started (also on Ctrl-C or error). With a terminal
the member table is live; without one (CI, a pipe) it prints plain progress lines and
tables.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from swim.agent import output, rpc
from swim.agent.cluster import AgentProcess, ClusterError, LocalCluster, Observers
from swim.agent.entry import run_trio
from swim.agent.output import Record
from swim.agent.ringview import moves_text, owned_counts, ring_of
from swim.ring import Ring

#: The whole demo must finish within this long (it normally takes 20-30 s).
DEMO_TIMEOUT_S = 100.0
#: How many keys the demo places on the ring.
DEMO_KEYS = 10_000
#: How often the ring is rebuilt from the first agent's member list while waiting.
RING_POLL_S = 0.05


def health_check_args(workdir: pathlib.Path) -> list[str]:
    """Every demo agent's ``--check``: critical while WORKDIR/NAME.unhealthy exists."""
    script = (
        f'test ! -e "{workdir}/$SWIM_SELF_NAME.unhealthy" '
        '|| { echo "marked unhealthy by the demo"; exit 2; }'
    )
    return ["--check", f"name=demo,interval=0.25s,timeout=2s,script={script}"]


class Display:
    """Progress lines plus a member table: live on a terminal, printed otherwise."""

    def __init__(self, plain: bool) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self.live_mode = self.console.is_terminal and not plain
        self.started = time.monotonic()
        self._live: Any = None

    def __enter__(self) -> Display:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(
                "", console=self.console, refresh_per_second=8, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.console.print(f"[{elapsed:5.1f}s] {message}", markup=False, soft_wrap=True)

    def ring(self, counts: Mapping[str, int], title: str) -> None:
        """Print the keys each ring member owns, as a table with a bar per member."""
        from rich.table import Table

        total = sum(counts.values()) or 1
        table = Table(title=title, title_justify="left")
        for column in ("member", "keys", "share", ""):
            table.add_column(column, justify="right" if column in ("keys", "share") else "left")
        for name, count in counts.items():
            share = count / total
            table.add_row(name, str(count), f"{share:.1%}", "#" * round(share * 40))
        self.console.print(table)

    def table(self, members: list[Record], title: str, *, final: bool = False) -> None:
        """Show the table: replace the live one, or print it (plain mode, `final` only)."""
        table = output.members_table(members, title=title)
        if self._live is not None:
            self._live.update(table)
        elif final:
            self.console.print(table)


class Demo:
    def __init__(self, cluster: LocalCluster, display: Display, count: int) -> None:
        self.cluster = cluster
        self.display = display
        self.count = count
        self.observers = Observers()
        self.observer: AgentProcess | None = None
        self.keys = [f"key-{i:05d}" for i in range(DEMO_KEYS)]

    async def _wait_ring(
        self, done: Callable[[Ring], bool], what: str, timeout_s: float = 60.0
    ) -> tuple[Ring, list[Record], float]:
        """Rebuild the observer's ring every `RING_POLL_S` until `done(ring)`: the ring,
        the member records it came from, and the wall time it was first seen."""
        assert self.observer is not None
        with trio.move_on_after(timeout_s):
            while True:
                try:
                    members = await self.cluster.members(self.observer)
                except rpc.RpcError:
                    members = []
                ring = ring_of(members)
                if members and done(ring):
                    return ring, members, time.time()
                await trio.sleep(RING_POLL_S)
        raise ClusterError(f"{self.observer.name}'s ring did not {what} within {timeout_s:g} s")

    def _show_ring(self, ring: Ring, title: str) -> dict[str, int]:
        """Say and show how many of the keys each member owns; the counts."""
        counts = owned_counts(ring, self.keys)
        self.display.say(
            f"ring: {len(self.keys)} keys over {len(ring)} members: "
            + ", ".join(f"{name} {count}" for name, count in counts.items())
            + f" (checksum {ring.checksum[:8]})"
        )
        self.display.ring(counts, title)
        return counts

    async def _crash(self, victim: AgentProcess, before: Ring) -> Ring:
        """SIGKILL `victim`; report the ring dropping it and its keys moving. The ring."""
        say = self.display.say
        assert self.observer is not None
        say(f"crashing {victim.name} with SIGKILL (pid {victim.pid})")
        killed_at = self.cluster.kill(victim, signal.SIGKILL)
        await self.cluster.wait_exit(victim, 5.0)
        after, _, at = await self._wait_ring(lambda r: victim.name not in r, "drop the victim")
        say(
            f"{self.observer.name}'s ring dropped {victim.name} {at - killed_at:.2f} s after "
            f"the kill (once it declared it failed): "
            + moves_text(before, after, self.keys, victim.name)
        )
        counts = self._show_ring(after, f"Ring without {victim.name}")
        say(f"{victim.name} owns {counts.get(victim.name, 0)} keys now")
        await self._report_failure(victim, killed_at)
        return after

    async def _report_failure(self, victim: AgentProcess, killed_at: float) -> None:
        say = self.display.say
        names = {a.name for a in self.cluster.agents.values() if a is not victim}
        with trio.move_on_after(60.0):
            while not (
                self.observers.first("suspect", victim.name, killed_at)
                or self.observers.first("failed", victim.name, killed_at)
            ):
                await trio.sleep(0.05)
        suspected = self.observers.first("suspect", victim.name, killed_at)
        if suspected:
            who, ts = min(suspected.items(), key=lambda kv: kv[1])
            say(f"{who} suspects {victim.name}: {ts - killed_at:.2f} s after the kill")
        failed = await self.observers.wait_for(
            "failed", victim.name, killed_at, observers=names, timeout_s=60.0
        )
        who, first = min(failed.items(), key=lambda kv: kv[1])
        last = max(failed.values())
        say(
            f"{who} declares {victim.name} failed: {first - killed_at:.2f} s after the "
            f"kill; all {len(names)} others agree within {last - killed_at:.2f} s "
            f"(detection time)"
        )
        await self._print_table(f"After the crash of {victim.name}")

    async def _sicken(self, sick: AgentProcess, before: Ring) -> None:
        """Fail `sick`'s health check, then let it pass: off the ring and back, alive."""
        say = self.display.say
        assert self.observer is not None
        flag = self.cluster.workdir / f"{sick.name}.unhealthy"
        say(f"failing {sick.name}'s health check (its script now exits 2)")
        marked_at = time.time()
        flag.touch()
        off, members, at = await self._wait_ring(lambda r: sick.name not in r, "drop it")
        record = next(m for m in members if m["name"] == sick.name)
        say(
            f"{self.observer.name} sees {sick.name} {record['health']} "
            f"({record['health_note']}) {at - marked_at:.2f} s later; its ring dropped it: "
            + moves_text(before, off, self.keys, sick.name)
        )
        counts = self._show_ring(off, f"Ring without {sick.name} (critical)")
        say(
            f"{sick.name} owns {counts.get(sick.name, 0)} keys now and is still "
            f"{record['status']}: health is not liveness"
        )
        await self._print_table(f"With {sick.name} critical")
        say(f"{sick.name}'s health check passes again")
        healed_at = time.time()
        flag.unlink()
        back, _, at = await self._wait_ring(lambda r: sick.name in r, "take it back")
        say(
            f"{sick.name} is back on {self.observer.name}'s ring {at - healed_at:.2f} s "
            f"later: " + moves_text(off, back, self.keys, sick.name)
            + ("; checksum as before" if back.checksum == before.checksum else "")
        )
        failed = self.observers.first("failed", sick.name, marked_at)
        say(
            f"no member declared {sick.name} failed" if not failed
            else f"{', '.join(sorted(failed))} declared {sick.name} failed"
        )

    async def _watch_table(self, title: str) -> None:
        while True:
            assert self.observer is not None
            try:
                members = await self.cluster.members(self.observer)
                self.display.table(members, f"{title} (as {self.observer.name} sees it)")
            except rpc.RpcError:
                pass
            await trio.sleep(0.25)

    async def _print_table(self, title: str) -> None:
        assert self.observer is not None
        members = await self.cluster.members(self.observer)
        self.display.table(members, f"{title} (as {self.observer.name} sees it)", final=True)

    async def run(self) -> None:
        say = self.display.say
        cluster = self.cluster
        say(
            f"starting {self.count} swim agents on 127.0.0.1, {cluster.profile} profile "
            f"(logs in {cluster.workdir})"
        )
        begin = time.time()
        agents = await cluster.start_many(
            self.count, tags={"role": "demo"}, extra_args=health_check_args(cluster.workdir)
        )
        self.observer = agents[0]
        victim = agents[len(agents) // 2]
        say(
            f"started {', '.join(a.name for a in agents)} on ports "
            f"{', '.join(str(a.bind[1]) for a in agents)}; each joined through {agents[0].name}"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_table, "Cluster")
            converged = await cluster.wait_converged(timeout_s=30.0)
            say(
                f"all {self.count} agents see each other alive, "
                f"{converged - begin:.1f} s after start"
            )
            await self._print_table("Converged")

            ring, _, _ = await self._wait_ring(lambda r: len(r) == self.count, "hold all")
            self._show_ring(ring, "Placement ring")

            survivors = [a for a in agents if a is not victim]
            for agent in survivors:
                await nursery.start(self.observers.watch, agent)
            without = await self._crash(victim, ring)

            say(f"restarting {victim.name} on the same address, joining through {agents[0].name}")
            restarted_at = time.time()
            await cluster.start(victim, join=[agents[0].bind])
            await nursery.start(self.observers.watch, victim)
            for agent in survivors:
                await cluster.wait_until(agent, {victim.name: "alive"}, timeout_s=30.0)
            say(
                f"{victim.name} rejoined: every member sees it alive "
                f"{time.time() - restarted_at:.2f} s after the restart"
            )
            back, _, _ = await self._wait_ring(lambda r: victim.name in r, "take it back")
            say(
                f"{victim.name} is back on the ring: "
                + moves_text(without, back, self.keys, victim.name)
                + ("; checksum as before the crash" if back.checksum == ring.checksum else "")
            )
            await self._print_table(f"After {victim.name} rejoined")

            sick = agents[-1] if agents[-1] is not victim else agents[1]
            await self._sicken(sick, back)

            sender = agents[-1]
            say(f"{sender.name} broadcasts user event 'hello' with payload 'from swim demo'")
            sent_at = time.time()
            await rpc.call(
                sender.rpc, {"cmd": "event", "name": "hello", "payload": "from swim demo"}
            )
            arrived = await self.observers.wait_for(
                "user", sender.name, sent_at - 1.0,
                observers={a.name for a in agents}, timeout_s=30.0, name="hello",
            )
            say(
                f"every member received 'hello' within {max(arrived.values()) - sent_at:.2f} s"
            )
            nursery.cancel_scope.cancel()
        say("stopping all agents (each leaves gracefully)")


def run_demo(args: argparse.Namespace) -> int:
    """The `swim demo` command (its options are parsed by `swim.agent.cli`)."""
    async def main(workdir: pathlib.Path, display: Display) -> int:
        with trio.fail_after(DEMO_TIMEOUT_S):
            async with LocalCluster.open(workdir, profile=args.profile) as cluster:
                try:
                    await Demo(cluster, display, args.agents).run()
                except (ClusterError, rpc.RpcError) as exc:
                    display.say(f"demo failed: {exc}")
                    for agent in cluster.agents.values():
                        display.console.print(
                            f"--- last lines of {agent.name}'s log ---\n{agent.log_tail(8)}",
                            markup=False,
                        )
                    return 1
        display.say("done: every agent stopped")
        return 0

    with tempfile.TemporaryDirectory(prefix="swim-demo-") as tmp, Display(args.plain) as display:
        try:
            return run_trio(main, pathlib.Path(tmp), display)
        except trio.TooSlowError:
            display.say(f"demo did not finish within {DEMO_TIMEOUT_S:g} s")
            return 1
        except KeyboardInterrupt:
            display.say("interrupted: every agent stopped")
            raise
