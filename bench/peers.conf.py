"""gunicorn's settings for the bench's other servers (the bare endpoint, the SDK handler, the simulator).

Only what is fair to share with them: kept-alive connections spread over the workers as ours are
(operations/workers.py), so that a ratio compares the two apps and not which worker won wrk's burst.
None of our checks or jobs.
"""


def post_worker_init(worker):  # noqa: ANN001, ANN201  (gunicorn's hook signature)
    from operations.workers import share_connections

    share_connections(worker)
