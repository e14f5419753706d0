"""`hawk cache`: what num_nodes="auto" keeps on this machine, and --clear to measure it again.

Two tables live under ~/.cache/hawk_kernels (HAWK_CACHE_DIR): the seconds per decode step, timed once per device,
torch, model shape, batch, sampling kind, step form and tree size (step_costs.py), and the acceptance counted on
your models (acceptance.py). Both are kept so that a size is timed and a probe run once per machine; a timing made
while another job shared the GPU, or before a driver or hardware change that kept torch's version, stays until it
is cleared.

    hawk cache                           # where the tables are, and what they hold
    hawk cache --clear                   # empty both: the next "auto" call measures again
    hawk cache --clear step-costs        # or only one of them (acceptance: the probes and the counts)

Clear while no hawk process runs: a running process keeps the entries it has read and writes them back with its
next measurement (disk_table.py merges, so that concurrent processes never lose each other's).
"""
from __future__ import annotations

from collections import Counter

from ..acceptance import AcceptanceTable, described
from ..step_costs import StepCostTable, machine_of
from .common import add_command, plural

TABLES = {"step-costs": StepCostTable, "acceptance": AcceptanceTable}


def add_parser(subparsers) -> None:
    c = add_command(subparsers, "cache", run,
                    "what num_nodes='auto' keeps on this machine (step costs, acceptance measured on your models), "
                    "and --clear to measure it again")
    c.add_argument("--clear", nargs="?", const="all", choices=("all", *TABLES), default=None,
                   help="empty both tables (all, the default), or one: the next 'auto' call measures what it needs "
                        "again (clear while no hawk process runs: a running one writes back what it has read)")


def run(args) -> int:
    tables = {name: kind() for name, kind in TABLES.items()}
    if args.clear is not None:
        for name, table in tables.items():
            if args.clear in ("all", name):
                table.change(dict.clear)  # under the table's lock: a process writing it meanwhile is not torn
                print(f"cleared {table.path}")
        return 0
    costs, counts = tables["step-costs"].merged(), tables["acceptance"].merged()
    print(f"{tables['step-costs'].path}: {plural(len(costs), 'step cost')}")
    for machine, n in sorted(Counter(machine_of(key) for key in costs).items()):
        print(f"  {machine}: {n}")
    print(f"{tables['acceptance'].path}: {plural(len(counts), 'acceptance')} measured (model, mode, sampling, layout)")
    for key, entry in sorted(counts.items()):
        print(f"  {described(key, entry)}")
    return 0
