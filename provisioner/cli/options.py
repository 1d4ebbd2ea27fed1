"""Arguments and options several commands share, defined once so their names, defaults and
help stay alike across node and fleet commands."""

from __future__ import annotations

import click

ACCEPT_HELP = "Trust the node's host key if it is unknown, and record it (never a changed one)."
PARALLEL_HELP = "How many nodes at once (default: parallel: in fleet.yaml, else 8)."
WIPE_HELP = ("What else to delete once the outputs are safe: none; models (the downloaded model "
             "files); all (the whole work folder and the LaunchAgent: the node as it was).")

NODE_YAML = click.argument("node_yaml", type=click.Path(dir_okay=False))
FLEET_YAML = click.argument("fleet_yaml", type=click.Path(dir_okay=False))
ACCEPT_NEW_HOST_KEY = click.option("--accept-new-host-key", is_flag=True, help=ACCEPT_HELP)
PARALLEL = click.option("--parallel", type=click.IntRange(1, 256), metavar="N", help=PARALLEL_HELP)

JSON_DOCUMENT = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
JSON_RECAP = click.option("--json", "as_json", is_flag=True,
                          help="Print the recap as one JSON document.")

# up
NO_LAUNCH = click.option("--no-launch", is_flag=True,
                         help="Install everything but do not start ComfyUI.")
NO_MODELS = click.option("--no-models", is_flag=True, help="Skip the model downloads.")
NO_SMOKE = click.option("--no-smoke", is_flag=True,
                        help="Do not make the first image that proves the node works.")
OPEN_BROWSER = click.option("--open", "open_browser", is_flag=True,
                            help="Open the URL in a browser once healthy.")
MAX_DOWNLOADS = click.option("--max-downloads", type=click.IntRange(1, 256), metavar="N",
                             help="At most N nodes download models at once (default: no bound).")
BREAK_LOCK = click.option("--break-lock", is_flag=True,
                          help="Take the node's lock even if another run holds it.")
LOCK_WAIT = click.option("--lock-wait", type=click.IntRange(0, 3600), default=10,
                         show_default=True, metavar="SECONDS",
                         help="How long to wait for another run's lock.")
LOCK_WAIT_FLEET = click.option("--lock-wait", type=click.IntRange(0, 3600), default=10,
                               show_default=True, metavar="SECONDS",
                               help="How long to wait for another run's lock on a node.")

# down and session
WIPE = click.option("--wipe", type=click.Choice(["none", "models", "all"]), default="none",
                    show_default=True, help=WIPE_HELP)
KEEP_OUTPUTS_REMOTE = click.option("--keep-outputs-remote", is_flag=True,
                                   help="Leave the outputs on the node once they are copied.")
KEEP_OUTPUTS_REMOTE_FLEET = click.option("--keep-outputs-remote", is_flag=True,
                                         help="Leave the outputs on the nodes once they are copied.")
DISCARD_OUTPUTS = click.option("--discard-outputs", is_flag=True,
                               help="Wipe even when some outputs could not be copied (they are lost).")
DRY_RUN_TEARDOWN = click.option("--dry-run", is_flag=True,
                                help="List what would be copied and deleted; change nothing.")
UNTIL = click.option("--until", metavar="HH:MM",
                     help="End at this local time (tomorrow if already past).")
FOR_DURATION = click.option("--for", "duration", metavar="DURATION",
                            help="End after this long, e.g. 3h, 45m, 20s.")
WARN = click.option("--warn", default="15m,5m", show_default=True, metavar="LIST",
                    help="Warn this long before the end (comma-separated; 'none' for no warnings).")
SESSION_DRAIN_TIMEOUT = click.option(
    "--drain-timeout", type=click.FloatRange(min=0), default=60, show_default=True,
    metavar="SECONDS", help="At the end, how long running work may finish before it is interrupted.")

# bench
BENCH_PROMPT = click.option("--prompt", help="The text prompt (default: a fixed one).")
BENCH_STEPS = click.option("--steps", type=click.IntRange(1, 10000),
                           help="Sampler steps (default: 20 for dev, 4 for schnell, as in the seed's table).")
