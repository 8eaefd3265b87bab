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

import argparse
import contextlib
import ctypes
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.report.claims import _same, interaction, judge_all
from ablate.report.cli import STUDY_FILE, build_report
from ablate.report.runs import Run, _is_number, _text, find_summaries, load_run
from ablate.report.sweep import ReportError, load_sweep
from ablate.report.verdicts import Verdict
from ablate.run.atomic import write_bytes_atomic
from ablate.run.identity import FINISHED
from ablate.run.sweep_guard import SWEEP_LOCK

ADD, MAX_SEEDS, SPENDING = 2, 10, "pocock"
LOCK_WAIT_S = 120  # a killed study's sweep gets this long to stop (it is sent SIGTERM)
Cell = tuple[str, ...]


class StudyError(Exception):
    """The study cannot go on; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Design:
    """What the preset, with the extra overrides, sweeps and where its runs go."""

    experiment: str  # the `experiment=<name>` override
    extras: list[str]  # further overrides, e.g. hydra/launcher=joblib
    sweep_dir: Path
    factors: dict[str, list[str]]  # swept keys but seed -> levels, as Hydra spells them
    params: set[str]  # the keys of hydra.sweeper.params (others are swept on the command line)
    seeds: list[int]  # the preset's seeds: round 1


def planned_looks(initial: int, max_seeds: int, add: int) -> int:
    """K, the most looks the seed cap allows: 1 + ceil((max_seeds - initial) / add)."""
    return 1 + max(0, math.ceil((max_seeds - initial) / add))


def seeds_at(initial: Sequence[int], look: int, add: int, max_seeds: int) -> list[int]:
    """The seeds an extended cell has at look k: the preset's, then the next integers, capped."""
    n = min(len(initial) + (look - 1) * add, max(max_seeds, len(initial)))
    more = itertools.count(max(initial) + 1)
    return [*initial, *(next(more) for _ in range(n - len(initial)))]


def claim_cells(claim: dict[str, Any], factors: dict[str, list[str]]) -> list[Cell]:
    """The cells a claim compares: its sides, `where` and `by` values; other factors at all levels."""
    by = interaction(claim)
    if isinstance(by, str) or not all(k in claim for k in ("factor", "better", "worse")):
        return []  # malformed: more seeds cannot decide it
    if claim["factor"] not in factors:
        return []
    wanted: dict[str, Any] = dict(claim.get("where") or {})
    wanted[claim["factor"]] = [claim["better"], claim["worse"]]
    if by is not None:
        wanted[by[0]] = [by[1], by[2]]
    keep = lambda k, v: k not in wanted or _same(v, wanted[k])  # noqa: E731
    return list(itertools.product(*([v for v in vs if keep(k, v)] for k, vs in factors.items())))


def cells_to_extend(verdicts: Sequence[Verdict], factors: dict[str, list[str]]) -> list[Cell]:
    """The cells that the undecided claims compare, in grid order (none for malformed claims)."""
    # A claim without a comparison is hopeless unless it only lacked runs ("fewer than 2 usable").
    hope = [v for v in verdicts if not v.decided and (v.comparison or "usable runs" in v.reason)]
    wanted = {c for v in hope for c in claim_cells(v.claim, factors)}
    return [c for c in itertools.product(*factors.values()) if c in wanted]


def stop_reason(verdicts: Sequence[Verdict], look: int, looks: int, cells: Sequence[Cell],
                elapsed_h: float = 0.0, max_hours: float | None = None) -> str | None:  # fmt: skip
    """Why the study stops after look k, or None to go on."""
    if not verdicts:
        return "no claims to judge"
    if all(v.decided for v in verdicts):
        return "every claim decided"
    if look >= looks:
        return f"seed cap (look {look} of {looks})"
    if not cells:
        return "more seeds cannot decide the undecided claims (malformed, or they compare no cells)"
    if max_hours is not None and elapsed_h >= max_hours:
        return f"wall-time cap ({elapsed_h:.2f} h >= {max_hours:g} h)"
    return None


def blocks(cells: Sequence[Cell]) -> list[list[list[str]]]:
    """Cells merged into grids (per factor a list of values) whose union is exactly `cells`."""
    grids = [[[v] for v in c] for c in dict.fromkeys(cells)]
    merged = True
    while merged:  # two grids that differ in one factor only are one grid
        merged = False
        for i, j in itertools.combinations(range(len(grids)), 2):
            a, b = grids[i], grids[j]
            diff = [k for k in range(len(a)) if set(a[k]) != set(b[k])]
            if len(diff) == 1:
                a[diff[0]] += [v for v in b[diff[0]] if v not in a[diff[0]]]
                del grids[j]
                merged = True
                break
    return grids


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _arg(key: str, values: Sequence[Any], params: set[str]) -> str:
    """`key=a,b`; one value: `key=a` for a sweeper param, else `key=choice(a)` (still swept)."""
    if len(values) == 1 and key not in params:
        return f"{key}=choice({values[0]})"  # keeps the key swept: part of the run-folder name
    return f"{key}={','.join(map(str, values))}"


def round_commands(design: Design, missing: dict[Cell, list[int]]) -> list[list[str]]:
    """`ablate.train` arguments of multiruns that run exactly the missing (cell, seed) runs."""
    by_seeds: dict[tuple[int, ...], list[Cell]] = {}
    for cell, seeds in missing.items():
        by_seeds.setdefault(tuple(seeds), []).append(cell)
    own = {*design.factors, "seed"}
    keep = [e for e in design.extras if _key(e) not in own]
    commands = []
    for seeds, cells in by_seeds.items():
        for grid in blocks(cells):
            args = [_arg(k, vs, design.params) for k, vs in zip(design.factors, grid, strict=True)]
            commands.append(
                ["-m", design.experiment, *keep, *args, _arg("seed", seeds, design.params)]
            )
    return commands


def _canon(text: str) -> str:
    return repr(float(text)) if _is_number(text) else text


def _levels(key: str, spec: Any) -> list[str]:
    (override,) = OverridesParser.create().parse_overrides([f"{key}={spec}"])
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    try:
        return list(override.sweep_string_iterator())
    except Exception as e:  # noqa: BLE001 - glob() needs the config loader
        raise StudyError(f"cannot list the values of {key}={spec} ({e})") from None


def read_design(experiment: str, extras: list[str]) -> Design:
    """Compose the preset with the overrides: its factors, seeds and fixed sweep directory."""
    try:
        parsed = OverridesParser.create().parse_overrides(extras)
    except Exception as e:  # noqa: BLE001 - Hydra's own message says what is wrong
        raise StudyError(f"bad override: {e}") from None
    swept: dict[str, list[str]] = {}  # swept on the command line
    fixed: dict[str, list[str]] = {}  # one value on the command line
    composed = [experiment]
    for ov, text in zip(parsed, extras, strict=True):
        key = ov.key_or_group
        if ov.is_sweep_override():
            swept[key] = _levels(key, text.split("=", 1)[1])
            composed.append(f"{ov.get_key_element()}={swept[key][0]}")
        else:
            composed.append(text)
            if ov.get_key_element() == key:  # not +key / ~key
                fixed[key] = [ov.get_value_element_as_str()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose("train", overrides=composed, return_hydra_config=True)
        except Exception as e:  # noqa: BLE001
            raise StudyError(f"cannot compose {' '.join(composed)}: {e}") from None
    if not str(cfg.hydra.sweeper._target_).endswith("BasicSweeper"):
        raise StudyError("a study needs Hydra's basic (grid) sweeper")
    if "${now:" in str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("dir")):
        raise StudyError("the preset has no fixed hydra.sweep.dir: rounds must share one folder")
    params = OmegaConf.to_container(cfg.hydra.sweeper.params or {}, resolve=True)
    levels = {k.lstrip("+~"): _levels(k, v) for k, v in params.items()}
    # The command line wins over sweeper params (BasicSweeper): a fixed value leaves one level.
    levels.update({k: v for k, v in fixed.items() if k in levels})
    levels.update(swept)
    seeds = levels.pop("seed", None)
    if seeds is None or not all(s.lstrip("-").isdigit() for s in seeds):
        raise StudyError(f"a study needs integer seeds swept by the preset, got seed={seeds}")
    factors = {k: v for k, v in levels.items() if not k.startswith("hydra")}
    sweep_dir = Path(str(cfg.hydra.sweep.dir)).expanduser().resolve()
    return Design(experiment, extras, sweep_dir, factors, set(params), [int(s) for s in seeds])


def _record_verdict(v: Verdict) -> dict[str, Any]:
    c = v.comparison
    used = None if c is None else c.n if c.pairing == "paired" else list(c.sizes)
    needed = None if math.isnan(v.needed) else "inf" if math.isinf(v.needed) else int(v.needed)
    return {"text": v.claim.get("text"), "verdict": v.verdict, "seeds": used, "needed": needed}


def _die_with_parent() -> None:
    """In the child: SIGTERM when the study dies (Linux), so a killed study leaves no sweep behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(args: list[str], sweep_dir: Path, log: Callable[[str], None] = print) -> int:
    """Run `python -m ablate.train <args>` once the sweep directory's lock is free; its exit code."""
    path = sweep_dir / SWEEP_LOCK
    if path.exists():  # e.g. the sweep of a killed study, still stopping
        lock = FileLock(path, timeout=LOCK_WAIT_S)
        with contextlib.suppress(Timeout):  # still held: ablate.train says by whom
            lock.acquire()
            lock.release()
    log("$ python -m ablate.train " + shlex.join(args))
    cmd = [sys.executable, "-m", "ablate.train", *args]
    return subprocess.run(cmd, preexec_fn=_die_with_parent, check=False).returncode


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
        self.record: dict[str, Any] = {
            "experiment": design.experiment.split("=", 1)[1], "command": list(command),
            "factors": design.factors, "initial_seeds": design.seeds, "add": add,
            "max_seeds": max_seeds, "max_hours": max_hours, "looks": self.looks,
            "spending": SPENDING, "fractions": self.fractions, "rounds": [], "stopped": None,
        }  # fmt: skip

    def seeds(self, look: int) -> list[int]:
        """The seeds of the cells extended at look k (none before look 1)."""
        return seeds_at(self.design.seeds, look, self.add, self.max_seeds) if look else []

    def _key(self, run: Run) -> tuple[Cell, str]:
        return tuple(_canon(_text(run.lookup(k))) for k in self.design.factors), _text(run.seed)

    def _planned_keys(self) -> set[tuple[Cell, str]]:
        return {(tuple(map(_canon, c)), str(s)) for c, ss in self.planned.items() for s in ss}

    def _missing(self) -> dict[Cell, list[int]]:
        root = self.design.sweep_dir
        found = [load_run(p, root) for p in find_summaries(root)] if root.is_dir() else []
        done = {self._key(r) for r in found if r.status in FINISHED and ".old-" not in r.name}
        missing = {c: [s for s in ss if (tuple(map(_canon, c)), str(s)) not in done]
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
        return judge_all(replace(sweep, runs=runs), looks=(look, self.looks), fractions=fractions)

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
            rnd.update(decided=decided, undecided=len(verdicts) - decided,
                       verdicts=[_record_verdict(v) for v in verdicts],
                       elapsed_s=round(time.monotonic() - start, 1))  # fmt: skip
            spread = Counter(len(s) for s in self.planned.values())
            per_cell = ", ".join(
                f"{n} seeds in {c} cell{'s' * (c > 1)}" for n, c in sorted(spread.items())[::-1]
            )
            self.log(f"round {look} (look {look} of {self.looks}): {per_cell}; claims "
                     f"{decided} decided, {len(verdicts) - decided} undecided")  # fmt: skip
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
    parser = argparse.ArgumentParser(
        prog="python -m ablate.study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("experiment", help="experiment=<preset> (conf/experiment/<preset>.yaml)")
    parser.add_argument("overrides", nargs="*", help="more ablate.train overrides (also after --)")
    parser.add_argument("--max-seeds", type=int, default=MAX_SEEDS, help="seed cap per cell (10)")
    parser.add_argument("--add", type=int, default=ADD, help="seeds added per round (2)")
    parser.add_argument("--max-hours", type=float, help="no new round after this wall time")
    args = parser.parse_intermixed_args(own)
    name = args.experiment.lstrip("+").removeprefix("experiment=")
    log = lambda text: print(f"ablate.study: {text}", flush=True)  # noqa: E731
    try:
        design = read_design(f"experiment={name}", [*args.overrides, *extras])
        log(
            f"{math.prod(map(len, design.factors.values()))} cells, seeds {design.seeds} first, in {design.sweep_dir}"
        )
        Study(design, args.max_seeds, args.add, args.max_hours, log, ["ablate.study", *argv]).run()
    except StudyError as e:
        print(f"ablate.study: error: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
