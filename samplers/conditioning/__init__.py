"""Conditional generation: one entry point `condition` (`condition.py`) given y = A·x + noise for
a linear `operators` A, by `replacement`, sequential Monte Carlo (`smc`, `particles`), `repaint`
or `dps`; `inpaint` / `colorize` are tasks on it (`tasks.py`); score `guidance`."""
