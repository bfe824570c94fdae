"""The job queue on PostgreSQL (records, processes, cancellation) and the worker that runs it."""
