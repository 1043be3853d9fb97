"""`findbox serve`: load the models, then serve the protocol with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from findbox.cli_options import add_model_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    g = parser.add_argument_group("server")
    g.add_argument("--host", help="bind address (default 0.0.0.0)")
    g.add_argument("--port", type=int, help="port (default 5004)")
    g.add_argument("--max-body-bytes", type=int, help="largest request body; larger gets 413")
    g.add_argument("--max-instances", type=int, help="most instances per request; more gets 413")
    g.add_argument("--max-image-pixels", type=int, help="largest image (w*h); larger gets 413")
    g.add_argument("--request-timeout-s", type=float,
                   help="answer 504 to a request not answered in this many seconds (default 120)")
    g.add_argument("--batch-window-ms", type=float,
                   help="gather concurrent requests into one model call for this long (default 0 = off)")
    g.add_argument("--no-warmup", dest="warmup", action="store_false", default=None,
                   help="report ready without a warm-up request")
    g.add_argument("--log-level", default="info",
                   help="log level; each request logs one JSON line on the findbox.access logger (/health and "
                        "/metrics at debug)")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from findbox.factory import resolve_model_paths
    from findbox.serve.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_access_log(args.log_level.upper())
    try:
        config = config_from_args(args)
        resolve_model_paths(config)  # fail before binding the port when a model is missing
    except (ValueError, TypeError, OSError) as exc:
        print(f"findbox serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    # on SIGTERM uvicorn stops accepting, lets in-flight requests finish (none outlives the request
    # timeout), then exits; findbox.access replaces uvicorn's own access log
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=args.log_level,
                                           access_log=False, timeout_graceful_shutdown=config.request_timeout_s + 5))
    state = app.state.findbox

    def stop_on_load_error() -> None:
        state.ready.wait()
        if state.error:
            server.should_exit = True

    threading.Thread(target=stop_on_load_error, daemon=True).start()
    server.run()
    if state.error:
        print(f"findbox serve: {state.error}", file=sys.stderr)
        return 1
    return 0


def configure_access_log(level: str) -> None:
    """The access log is one bare JSON object per line on stderr, for log shippers to parse."""
    access = logging.getLogger("findbox.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers[:] = [handler]
    access.setLevel(level)
    access.propagate = False
