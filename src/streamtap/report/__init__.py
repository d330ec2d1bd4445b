"""`streamtap report`: tables, JSON and an HTML page from the summary events in log files.

    from streamtap.report import Aggregator, read_paths, render_text

    agg = Aggregator()  # since=, until=: epoch seconds
    read_paths(agg, ["app.log", "app.log.1.gz"])
    print(render_text(agg))

The command line (`streamtap report`, `python -m streamtap report`) is `report_main`. Nothing
in this package imports `openai` or streamtap's SDK modules. Its parts, each in a private module:

- `_inputs`: reading log files (plain, gzipped, stdin) and telling summary events from the rest;
- `_values`: the checks on every number, time and string taken from a log line;
- `_aggregate`: counters and exact (nearest-rank) percentiles per model, endpoint and time bucket;
- `_text`, `_html` (with `_svg`, its charts): the outputs;
- `_cli`: the arguments, and what goes to stdout and stderr.
"""

from __future__ import annotations

from ._aggregate import Aggregator, percentile
from ._cli import report_main
from ._html import render_html
from ._inputs import read_paths
from ._text import render_text

__all__ = ["Aggregator", "percentile", "read_paths", "render_html", "render_text", "report_main"]
