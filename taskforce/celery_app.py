"""Entry point for workers: `celery -A taskforce.celery_app worker`."""
from taskforce import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
