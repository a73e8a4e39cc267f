"""``pixtill view PATH``: the arguments and the handler the command line registers."""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        help="a pixtill output folder, a save_to_disk folder, Parquet files, or a Hub dataset id",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="write a self-contained static viewer to DIR instead of serving",
    )
    parser.add_argument(
        "--max-rows", type=int, default=None, help="with --export: rows per table (default all)"
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C), or export; returns the exit code."""
    from pixtill.viewer.data import ViewerData
    from pixtill.viewer.export import export_static
    from pixtill.viewer.server import ViewerServer
    from pixtill.viewer.source import SourceError

    try:
        data = ViewerData.open(args.path)
    except SourceError as exc:
        print(f"pixtill view: error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{leaf.name} ({leaf.num_rows} rows)" for leaf in data.leaves)
    if args.export is not None:
        index = export_static(data, args.export, max_rows=args.max_rows)
        print(f"Exported {summary} to {index.parent}/; open {index} in a browser.")
        return 0
    server = ViewerServer(data, port=args.port)
    url = server.start()
    print(f"Viewing {summary}", flush=True)
    print(f"pixtill view: {url} (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(url)
    try:
        threading.Event().wait()
    finally:
        server.stop()
    return 0
