"""Seeds only where needed: `python -m ablate.study experiment=<name> [options] [-- overrides]`.

Round 1 is the preset's own multirun (`python -m ablate.train -m experiment=<name> <overrides>`, any
launcher): every cell at the preset's seeds; then every claim is judged (look 1). Each later round
gives `--add` more seeds only to the cells the inconclusive claims compare (as claims.compare pairs
them: factor at better/worse, `where`, `by` levels, every level of the other swept factors), by
multiruns restricted to those cells (`... norm=none,batch optim.lr=0.1 seed=3,4`: command-line
values replace the preset's sweeper params) into the preset's fixed sweep dir, and judges at look k
of K = 1 + ceil((max_seeds - initial) / add) (Pocock spending, planned seeds per look as information
fractions). It stops when every claim is decided, at the seed cap or after --max-hours (checked
between rounds), records the rounds in <sweep_dir>/study.json and writes the report.
Resumable: nothing carries over in memory; look k is judged on the runs planned up to round k, and
a round trains only its runs not finished on disk, so after a kill the same command replays the
finished rounds from disk and carries on (ablate.train resumes the interrupted runs).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ablate.overrides import canonical, override_value, value_text
from ablate.report import build_report
from ablate.report.judge import Verdict, carry, judge_all
from ablate.report.load import STUDY_FILE, ReportError, Run, find_summaries, load_run, load_sweep
from ablate.run import forked
from ablate.run.args import ArgumentParser
from ablate.run.atomic import write_bytes_atomic
from ablate.run.record import FINISHED
from ablate.run.sweep_guard import SWEEP_LOCK
from ablate.study.command import flag_problems, resolve_budget
from ablate.study.design import (
    Cell,
    Design,
    StudyError,
    blocks,
    read_design,
    round_commands,
)
from ablate.study.rounds import (
    ADD,
    MAX_SEEDS,
    SPENDING,
    budget_problem,
    cells_to_extend,
    claim_cells,
    planned_looks,
    seeds_at,
    stop_reason,
)
from ablate.validate import fail

__all__ = [
    "Design", "Study", "StudyError", "blocks", "budget_problem", "cells_to_extend", "claim_cells", "main",
    "planned_looks", "read_design", "resolve_budget", "round_commands", "seeds_at", "stop_reason",
]  # fmt: skip

LOCK_WAIT_S = 120  # a killed study's sweep gets this long to stop (it is sent SIGTERM)
INTERRUPT_GRACE_S = 10.0  # after Ctrl-C: seconds the run may take to stop by itself (then SIGTERM)


def _record_verdict(v: Verdict) -> dict[str, Any]:
    c = v.comparison
    used = None if c is None else c.n if c.pairing == "paired" else list(c.sizes)
    needed = None if math.isnan(v.needed) else "inf" if math.isinf(v.needed) else int(v.needed)
    return {"text": v.claim.get("text"), "verdict": v.verdict, "seeds": used, "needed": needed}


def launch(args: list[str], sweep_dir: Path, log: Callable[[str], None] = print) -> int:
    """Run `python -m ablate.train <args>` once the sweep directory's lock is free; its exit code."""
    path = sweep_dir / SWEEP_LOCK
    if path.exists():  # e.g. the sweep of a killed study, still stopping
        lock = FileLock(path, timeout=LOCK_WAIT_S)
        with contextlib.suppress(Timeout):  # still held: ablate.train says by whom
            lock.acquire()
            lock.release()
    log("$ python -m ablate.train " + shlex.join(args))
    # forked from a server that imported torch and Lightning for the first round: a later round
    # starts in ~2 s, not ~8; it gets SIGTERM if the study dies, so a killed study leaves no sweep
    child = forked.start(["-m", "ablate.train", *args], die_with_parent=True)
    try:
        return child.wait()
    except KeyboardInterrupt:
        stop_child(child)
        raise


def stop_child(child: forked.ForkedProgram | subprocess.Popen) -> None:
    """After Ctrl-C: let the run save its place and exit, as `ablate.train` does on SIGINT or SIGTERM.

    A terminal's Ctrl-C reaches the child too (one process group); `kill -INT <study>` does not,
    so the child is sent SIGTERM if it is still running after a moment. SIGKILL if it hangs or on
    a second Ctrl-C (the run then resumes from its last saved checkpoint, as after any kill).
    """
    with contextlib.suppress(KeyboardInterrupt):
        for sig, wait_s in ((None, INTERRUPT_GRACE_S), (signal.SIGTERM, LOCK_WAIT_S)):
            if sig is not None:
                child.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=wait_s)
                return
    child.kill()
    child.wait()


class Study:
    """The rounds of one study; `run()` replays them from disk and trains what is missing."""

    def __init__(self, design: Design, max_seeds: int = MAX_SEEDS, add: int = ADD,
                 max_hours: float | None = None, log: Callable[[str], None] = print,
                 command: Sequence[str] = ()) -> None:  # fmt: skip
        if add < 1:
            raise StudyError(f"--add {add}: need at least 1 seed per round")
        self.design, self.max_seeds, self.add, self.max_hours = design, max_seeds, add, max_hours
        self.log, self.looks = log, planned_looks(len(design.seeds), max_seeds, add)
        self.fractions = [len(self.seeds(k)) for k in range(1, self.looks + 1)]
        self.planned: dict[Cell, list[int]] = {}  # cell -> its seeds planned so far
        self.decided: dict[int, Verdict] = {}  # claim index -> its verdict at the look it crossed
        self.record: dict[str, Any] = {
            "experiment": override_value(design.experiment), "command": list(command),
            "factors": design.factors, "initial_seeds": design.seeds, "add": add,
            "max_seeds": max_seeds, "max_hours": max_hours, "looks": self.looks,
            "spending": SPENDING, "fractions": self.fractions, "rounds": [], "stopped": None,
        }  # fmt: skip

    def seeds(self, look: int) -> list[int]:
        """The seeds of the cells extended at look k (none before look 1)."""
        return seeds_at(self.design.seeds, look, self.add, self.max_seeds) if look else []

    def _key(self, run: Run) -> tuple[Cell, str]:
        return tuple(canonical(value_text(run.lookup(k))) for k in self.design.factors), value_text(
            run.seed
        )

    def _planned_keys(self) -> set[tuple[Cell, str]]:
        return {(tuple(map(canonical, c)), str(s)) for c, ss in self.planned.items() for s in ss}

    def _missing(self) -> dict[Cell, list[int]]:
        root = self.design.sweep_dir
        found = [load_run(p, root) for p in find_summaries(root)] if root.is_dir() else []
        done = {self._key(r) for r in found if r.status in FINISHED and ".old-" not in r.name}
        missing = {c: [s for s in ss if (tuple(map(canonical, c)), str(s)) not in done]
                   for c, ss in self.planned.items()}  # fmt: skip
        return {c: ss for c, ss in missing.items() if ss}

    def _judge(self, look: int) -> list[Verdict]:
        """Look k's verdicts, on the runs planned up to round k (later rounds' runs left out)."""
        try:
            sweep = load_sweep(self.design.sweep_dir)
        except ReportError:
            return []
        planned = self._planned_keys()
        runs = [r for r in sweep.runs if self._key(r) in planned]
        fractions = tuple(float(f) for f in self.fractions)
        verdicts = judge_all(replace(sweep, runs=runs), looks=(look, self.looks),
                             fractions=fractions, earlier=self.decided)  # fmt: skip
        self.decided = carry(self.decided, verdicts)  # a claim decided at a look stays decided
        return verdicts

    def _train(self, look: int, missing: dict[Cell, list[int]]) -> None:
        d, count = self.design, lambda m: sum(map(len, m.values()))
        first = ["-m", d.experiment, *d.extras]  # round 1: the preset's multirun, unchanged
        for args in [first] if look == 1 else round_commands(d, missing):
            rc = launch(args, d.sweep_dir, self.log)
            if rc == 1 and count(self._missing()) < count(missing):  # some runs failed
                self.log("warning: ablate.train exited 1 (failed runs: see above); judging on")
            elif rc != 0:
                why = f"ablate.train exited {rc} in round {look}; the same command continues"
                raise StudyError(why, rc)

    def run(self) -> Path:
        """Play every round, train what is missing, write the report; the report's folder."""
        start, cells, look = (
            time.monotonic(),
            list(itertools.product(*self.design.factors.values())),
            1,
        )
        while True:
            seeds, before = self.seeds(look), self._planned_keys()
            for cell in cells:
                self.planned[cell] = sorted({*self.planned.get(cell, []), *seeds})
            new = len(self._planned_keys() - before)
            rnd: dict[str, Any] = {
                "look": look, "seeds": seeds, "added": sorted(set(seeds) - set(self.seeds(look - 1))),
                "cells": [dict(zip(self.design.factors, c, strict=True)) for c in cells], "new_runs": new,
            }  # fmt: skip
            self.record["rounds"].append(rnd)
            self._write()
            if missing := self._missing():
                self._train(look, missing)
            verdicts = self._judge(look)
            decided = sum(v.decided for v in verdicts)
            untested = sum(v.verdict == "not tested" for v in verdicts)
            rnd.update(decided=decided, not_tested=untested,
                       undecided=len(verdicts) - decided - untested,
                       verdicts=[_record_verdict(v) for v in verdicts],
                       elapsed_s=round(time.monotonic() - start, 1))  # fmt: skip
            spread = Counter(len(s) for s in self.planned.values())
            per_cell = ", ".join(
                f"{n} seeds in {c} cell{'s' * (c > 1)}" for n, c in sorted(spread.items())[::-1]
            )
            not_tested = f"{untested} not tested, " if untested else ""
            self.log(f"round {look} (look {look} of {self.looks}): {per_cell}; claims {decided} "
                     f"decided, {not_tested}{rnd['undecided']} undecided")  # fmt: skip
            cells = cells_to_extend(verdicts, self.design.factors)
            hours = (time.monotonic() - start) / 3600
            if reason := stop_reason(verdicts, look, self.looks, cells, hours, self.max_hours):
                break
            look += 1
        self.record["stopped"] = reason
        self._write()
        fractions = tuple(float(f) for f in self.fractions)
        out = build_report(self.design.sweep_dir, (look, self.looks), SPENDING, fractions)
        self.log(f"stopped: {reason}; report: {out / 'summary.md'}")
        return out

    def _write(self) -> None:
        path = self.design.sweep_dir / STUDY_FILE
        write_bytes_atomic(path, json.dumps(self.record, indent=2).encode())


def main(argv: list[str] | None = None) -> int:
    """`python -m ablate.study experiment=<name> [options] [-- overrides]`: 0 when the report is out."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, extras = argv[:cut], argv[cut + 1 :]
    parser = ArgumentParser(prog="python -m ablate.study", description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="experiment=<preset> (conf/experiment/<preset>.yaml)")
    parser.add_argument("overrides", nargs="*", help="more ablate.train overrides (also after --)")
    # Defaults: the preset's declared `study:` budget, else 10 seeds, 2 per round, no time cap.
    parser.add_argument("--max-seeds", type=int, help="seed cap per cell (study.max_seeds, 10)")
    parser.add_argument("--add", type=int, help="seeds added per round (study.add, 2)")
    parser.add_argument("--max-hours", type=float, help="no new round after this wall time")
    parser.add_argument("--default-max-hours", type=float,
                        help="the wall-time cap when neither --max-hours nor the preset's "
                        "study.max_hours sets one (make studies: 0.2)")  # fmt: skip
    args = parser.parse_intermixed_args(own)
    name = args.experiment.lstrip("+").removeprefix("experiment=")
    log = lambda text: print(f"ablate.study: {text}", flush=True)  # noqa: E731
    # a bad flag or override: one line each and exit 2, before study.json or a run folder is written
    if problems := flag_problems(args, [*args.overrides, *extras]):
        fail(problems)
    try:
        design = read_design(f"experiment={name}", [*args.overrides, *extras])
        log(
            f"{math.prod(map(len, design.factors.values()))} cells, seeds {design.seeds} first, in {design.sweep_dir}"
        )
        budget = resolve_budget(
            design.budget, args.max_seeds, args.add, args.max_hours, args.default_max_hours
        )
        if problem := budget_problem(len(design.seeds), budget[0], budget[1], design.claims):
            if args.max_seeds is None and args.add is None:  # the preset's own plan: a design error
                raise StudyError(problem)
            log(f"warning: {problem}; running as asked (--max-seeds/--add)")
        Study(design, *budget, log, ["ablate.study", *argv]).run()
    except StudyError as e:
        for line in str(e).splitlines():
            print(f"ablate.study: error: {line}", file=sys.stderr)
        return e.code
    return 0
