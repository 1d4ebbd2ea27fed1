"""``bench``: time Flux text-to-image on a node and record it in the local history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ..core.config import NodeConfig, load_node
from .connection import open_node

if TYPE_CHECKING:
    from ..bench.report import BenchOptions, BenchReport
    from ..bench.run import BenchSink


def bench(config_path: str, *, options: Optional["BenchOptions"] = None,
          plot_path: Optional[str] = None, history: bool = True,
          accept_new_host_key: bool = False, on_event: "BenchSink" = lambda event: None,
          config: Optional[NodeConfig] = None, connection=None) -> "BenchReport":
    """Benchmark Flux text-to-image on the node (warm-up + N runs, memory sampled each second),
    append the result to the local CSV history and draw ``plot_path`` if given.

    Raises ``BenchFailed`` (``.report`` = the BenchReport so far, also recorded) when a run
    fails, ``WorkflowError`` before anything is submitted when the node lacks a node class
    or model file. A fleet passes ``config`` (``config_path`` then names the node) and its
    ``connection``; the report is JSON-serialisable for its one table.
    """
    from ..bench.plot import require_matplotlib
    from ..bench.report import BenchOptions
    from ..bench.run import record_bench, run_bench
    from ..core.errors import BenchFailed
    from .service import service_down_reason

    if plot_path:
        require_matplotlib()  # refuse now, not after a long bench
    cfg = config or load_node(config_path)
    try:
        with open_node(cfg, accept_new_host_key=accept_new_host_key, reuse=connection) as node:
            report = run_bench(node, cfg, options or BenchOptions(), on_event,
                               why_down=lambda facts: service_down_reason(node, cfg, facts)[1])
    except BenchFailed as error:
        if error.report is not None:
            error.report = record_bench(error.report, plot_path=plot_path, history=history)
        raise
    return record_bench(report, plot_path=plot_path, history=history)
