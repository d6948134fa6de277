"""`nas serve`: the design service - searches, designs, profiles and the zoo over HTTP (FastAPI, under /v1).

The service only schedules and persists: searches run through the same engine as the CLI
(:func:`nas.search.engine.run_search`), one child process per running job. Job state, tokens and progress
events live in one database (SQLite under the service folder by default, PostgreSQL by URL), the same
database that holds the jobs' Optuna studies, so a killed server resumes its running searches from their
studies. Modules: :mod:`~nas.service.jobs` (the tables), :mod:`~nas.service.auth` (tokens),
:mod:`~nas.service.runner` (queue and child processes), :mod:`~nas.service.worker` (one job's process),
:mod:`~nas.service.requests` (request checks), :mod:`~nas.service.app` (the routes).
FastAPI, uvicorn and httpx are the ``serve`` extra; nothing here is imported by the library or ``nas --help``.
"""
