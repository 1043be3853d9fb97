"""`findbox serve`: load the models, then serve the protocol with uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from findbox.cli import (
    add_model_options,
    add_options,
    print_error,
    serve_config_from_args,
)
from findbox.config import Engine, RayConfig, ServerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_options(parser, ServerConfig, "server")
    add_options(parser, RayConfig, "ray engine (--engine ray)")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from findbox.factory import resolve_model_paths
    from findbox.serve.app import create_app

    # each request logs one JSON line on the findbox.access logger (/health and /metrics at debug)
    configure_access_log(args.log_level.upper())
    config = serve_config_from_args(args)
    resolve_model_paths(config.pipeline)  # fail before binding the port when a model is missing
    if config.server.api_key_file:
        from findbox.serve.auth import read_keys

        read_keys(config.server.api_key_file)  # and when the key file is missing or empty
    if config.server.engine == Engine.RAY:
        from findbox.serve import ray

        return ray.run(config, args.log_level)
    app = create_app(config)
    server_config = config.server
    # on SIGTERM uvicorn stops accepting, lets in-flight requests finish (none outlives the request
    # timeout), then exits; findbox.access replaces uvicorn's own access log
    server = uvicorn.Server(uvicorn.Config(app, host=server_config.host, port=server_config.port,
                                           log_level=args.log_level, access_log=False,
                                           timeout_graceful_shutdown=server_config.request_timeout_s + 5))
    state = app.state.findbox

    def stop_on_load_error() -> None:
        state.ready.wait()
        if state.error:
            server.should_exit = True

    threading.Thread(target=stop_on_load_error, daemon=True).start()
    server.run()
    if state.error:
        print_error("serve", state.error)
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
