"""The `xavyo-siem` command line: one module per command group, mirroring `api/routes/`,
each command a thin adapter (parse the options, call one function, print the result).

* `root.py`: the root app (`app`), `--version`, the groups, `main`
* `options.py`: options and parsers every group shares; `output.py`: what is printed how
* `events.py` (sample, ingest, events), `db.py`, `destinations.py`, `dead_letters.py`,
  `health.py`, `run.py` (run, serve), `exports.py` (export, export verify, jobs),
  `tokens.py`, `keys.py`
"""

from xavyo_siem.cli.root import app, main, tune_gc

__all__ = ["app", "main", "tune_gc"]
