"""`swim demo`: a five-member cluster on this machine, a crash, a rejoin, a user event.

Starts real `swim agent` processes on loopback (local profile, free ports), shows the
member table, SIGKILLs one member and reports when the others suspect it and declare it
failed, restarts it and shows it rejoin, broadcasts a user event and shows it arrive,
then stops every process it started (also on Ctrl-C or error). With a terminal the table
is live; without one (CI, a pipe) it prints plain progress lines and tables.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import tempfile
import time
from typing import Any

import trio

from swim.agent import output, rpc
from swim.agent.cluster import AgentProcess, ClusterError, LocalCluster, Observers
from swim.agent.entry import run_trio
from swim.agent.output import Record

#: The whole demo must finish within this long (it normally takes 15-25 s).
DEMO_TIMEOUT_S = 100.0


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
        agents = await cluster.start_many(self.count, tags={"role": "demo"})
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

            survivors = [a for a in agents if a is not victim]
            for agent in survivors:
                await nursery.start(self.observers.watch, agent)

            names = {a.name for a in survivors}
            say(f"crashing {victim.name} with SIGKILL (pid {victim.pid})")
            killed_at = cluster.kill(victim, signal.SIGKILL)
            await cluster.wait_exit(victim, 5.0)
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
            await self._print_table(f"After {victim.name} rejoined")

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
