"""The default training schedule, by corpus size: 60 epochs for up to 50,000 training rows, then a budget of rows seen
that grows with the square root of the corpus, with about 60 evaluations and checkpoints per run whatever its length.

Sixty epochs are what SciFact (4,665 training rows) and Cranfield (1,260) need to converge with batches of 1,024; at
10,000,000 rows they would be 600,000,000 row passes and 60 evaluations 10,000 s apart on a CPU. The heads have a few
hundred thousand parameters, so beyond a few million rows seen each further row adds little. The budget below keeps
every corpus the package was tuned on on exactly its old schedule (the curves meet at 50,000 rows) and bounds the
rest:

| training rows | default schedule | rows seen |
|---|---|---|
| 1,000 | 60 epochs | 60,000 |
| 50,000 | 60 epochs | 3,000,000 |
| 1,000,000 | 13.4 epochs | 13,416,407 |
| 10,000,000 | 4.2 epochs | 42,426,406 |

`--epochs` or `--max_steps` on the command line replaces the default, as for any `Trainer` run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


DEFAULT_EPOCHS = 60
# Up to this many training rows the default is DEFAULT_EPOCHS epochs; past it, rows seen grow as the square root.
EPOCH_SCHEDULE_ROWS = 50_000
# Evaluations (and checkpoints) of a run on the step schedule: as many as the epoch schedule makes.
EVALUATIONS_PER_RUN = DEFAULT_EPOCHS


def default_rows_seen(train_rows: int) -> int:
    """Training rows a default run passes through the heads: `60 x train_rows` up to 50,000 rows, then
    `3,000,000 x sqrt(train_rows / 50,000)`."""
    if train_rows <= EPOCH_SCHEDULE_ROWS:
        return DEFAULT_EPOCHS * train_rows
    return int(DEFAULT_EPOCHS * EPOCH_SCHEDULE_ROWS * math.sqrt(train_rows / EPOCH_SCHEDULE_ROWS))


@dataclass(frozen=True)
class StepSchedule:
    """A run of `max_steps` optimizer steps, evaluated, checkpointed and logged every `interval` steps."""

    max_steps: int
    interval: int

    @property
    def evaluations(self) -> int:
        return math.ceil(self.max_steps / self.interval)


def step_schedule(train_rows: int, rows_per_step: int) -> StepSchedule | None:
    """The default schedule of a corpus larger than `EPOCH_SCHEDULE_ROWS`, in steps of `rows_per_step` rows (batch
    size x processes); `None` when the epoch schedule applies.

    Example:

    >>> step_schedule(1_000_000, 1024)
    StepSchedule(max_steps=13102, interval=219)
    >>> step_schedule(5_000, 1024) is None
    True
    """
    if train_rows <= EPOCH_SCHEDULE_ROWS:
        return None
    max_steps = math.ceil(default_rows_seen(train_rows) / rows_per_step)
    return StepSchedule(max_steps=max_steps, interval=math.ceil(max_steps / EVALUATIONS_PER_RUN))
