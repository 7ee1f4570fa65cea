"""Entry point for workers: `celery -A taskforce.celery_app worker`."""
from taskforce import create_app

app = create_app()
celery = app.extensions["celery"]
