"""gunicorn's settings file (read from the working folder): bad settings stop it early, workers run the jobs."""

import os
import sys

# Keep an idle connection longer than the clients do: Node's fetch (undici, the VS Code kit's) drops an
# idle socket after 4 s. A server that closes first races the client's next request on that socket, which
# then fails as "other side closed" (gunicorn's default is 2 s). Idle connections wait in the gthread
# worker's poller, not in a thread.
keepalive = 5


def on_starting(server):  # noqa: ANN001, ANN201  (gunicorn's hook signature)
    """Check every setting before any worker starts: one list of problems, no traceback."""
    from settings import ConfigError, bind_problems, load_config, values_from

    try:
        config = load_config(values_from(os.environ), os.path.join(os.getcwd(), "instance"))
        # Sandbox mode answers loopback only unless LBPAY_SANDBOX_PUBLIC says otherwise; the bind
        # addresses are known here, not in the app.
        problems = bind_problems(config, list(server.cfg.bind))
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        sys.exit(2)


def post_worker_init(worker):  # noqa: ANN001, ANN201
    """Share kept-alive connections between workers; start the scheduled jobs in each worker.

    A lease in the database runs each job once at a time.
    """
    from app import start_scheduler
    from operations.workers import share_connections

    share_connections(worker)

    extensions = getattr(worker.wsgi, "extensions", {})  # another app served with this file has no shop
    if "lbpay.shop" in extensions:
        start_scheduler(worker.wsgi)
