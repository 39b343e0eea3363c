"""pytcp's benchmarks: `make bench` (or `python -m benchmarks`), never part of `make test`.

Every pytcp figure runs the installed `pytcp` command as a user runs it, beside the
Linux kernel (and ncat/nc where a user would pick them) measured in the same run, inside
network namespaces this package creates and always removes. Each figure is a module with
`run(bench) -> Figure`; `__main__` runs them, prints medians and ratios with tabulate and
writes JSON. Modules: `netns` (namespaces, entered with pyroute2's setns), `proc`
(bounded subprocesses, the pytcp command, readiness), `report` (rows, medians, ratios,
tables, JSON, the machine), one module per figure, and `synflood` (spoofed SYNs from a
raw socket, toward pytcp's address only). Imports the standard library, pyroute2 and
tabulate; never the stack (pytcp is measured through its command).
"""
