"""A small app whose provider ``eventbus work`` subprocesses load in the RabbitMQ tests.

Listeners append one line per run to ``$EVENTBUS_TEST_RESULTS/<pid>.log`` (an append-only
file per worker process, written before the job is acked), which is how the tests count
completions, duplicates and attempts across processes.
"""
