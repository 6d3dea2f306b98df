"""compare.py's measuring: the series of timed runs, interleaved in shuffled rounds."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from compare_commands import CommandFailed, note, time_command

WARMUP_ROUNDS = 1
ORDER_SEED = 1  # the order of the commands in each round: shuffled, the same every run


@dataclass
class Series:
    """One command measured on one image: how to run it once, and its times."""

    image: str
    label: str
    command: Callable[[int], list[str]]  # the argv of run i: ids and paths differ per run
    repeat: int  # counted runs
    after: Callable[[int], None] | None = None  # untimed clean-up after run i
    times: list[float] = field(default_factory=list)
    error: str | None = None


def measure(series: list[Series]) -> None:
    """Run every series once per round until it has its runs, after WARMUP_ROUNDS
    rounds that are not counted.

    All series share the rounds, both images included, so that a change in background
    load between two minutes does not show up as a difference between two figures. Each
    round runs them in a new order (shuffled, from a fixed seed), so that no command
    always runs just after the same other one (the deletion of a large copy, say).
    """
    order = random.Random(ORDER_SEED)
    total = WARMUP_ROUNDS + max(one.repeat for one in series)
    for round_ in range(total):
        note(f"round {round_ + 1}/{total}" + (" (warm-up)" if round_ < WARMUP_ROUNDS else ""))
        due = [one for one in series
               if one.error is None and round_ < WARMUP_ROUNDS + one.repeat]
        order.shuffle(due)
        for one in due:
            # Untimed: write back what the previous command (a copy, say) left dirty, so
            # that no command pays for another's writes.
            os.sync()
            try:
                elapsed = time_command(one.command(round_))
                if one.after is not None:
                    one.after(round_)
            except CommandFailed as exc:
                one.error = str(exc)
                continue
            if round_ >= WARMUP_ROUNDS:
                one.times.append(elapsed)
