"""The simulated bus between the control plane and each recording server: every message
may be delayed, dropped, duplicated and so reordered, and is lost if its server's link
was cut or its agent restarted while it was on its way (a NATS connection that drops
loses what it had not delivered; core NATS never redelivers)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sim.clock import Clock


@dataclass
class Link:
    """One recording server's connection to the NATS cluster."""

    cut: bool = False
    """Black-holed: nothing gets through either way (R2's network failure)."""
    heartbeats_lost: bool = False
    """Only its heartbeats are lost: the probe and commands still get through."""
    generation: int = 0
    """Bumped when the connection drops (a cut, a restart): a message sent before is lost."""
    dead: bool = False
    """Cut for good: stays cut after the faults stop."""


@dataclass
class BusFaults:
    """How badly the bus behaves: per message."""

    drop: float = 0.0
    duplicate: float = 0.0
    slow: float = 0.0
    """Share of messages held up (reordered behind later ones)."""
    slow_max: float = 2.0
    """The longest hold-up, seconds."""

    def describe(self) -> str:
        return (
            f"drop {self.drop:.3f}, duplicate {self.duplicate:.3f}, "
            f"slow {self.slow:.3f} (up to {self.slow_max:.1f} s)"
        )


class Network:
    """Delivers messages with latency and faults drawn from its own random stream."""

    def __init__(self, clock: Clock, rng: random.Random, faults: BusFaults) -> None:
        self.clock, self.rng, self.faults = clock, rng, faults
        self.sent = 0
        self.lost = 0

    def latency(self) -> float:
        """One hop's delay: a millisecond or so, now and then much more."""
        if self.faults.slow and self.rng.random() < self.faults.slow:
            return self.rng.uniform(0.05, self.faults.slow_max)
        return 0.0005 + 0.0095 * self.rng.random()

    def send(self, link: Link, deliver: Callable[[], None]) -> None:
        """One message to or from the server behind ``link``: ``deliver`` runs on arrival,
        once or twice, unless it is lost."""
        self.sent += 1
        if link.cut or (self.faults.drop and self.rng.random() < self.faults.drop):
            self.lost += 1
            return
        copies = 2 if self.faults.duplicate and self.rng.random() < self.faults.duplicate else 1
        generation = link.generation

        def arrive() -> None:
            if link.cut or link.generation != generation:
                self.lost += 1
                return
            deliver()

        for _ in range(copies):
            self.clock.after(self.latency(), arrive)
