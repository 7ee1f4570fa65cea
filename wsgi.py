"""WSGI entry point: `gunicorn wsgi:app` in production, `flask --app wsgi run` locally."""
from taskforce import create_app

app = create_app()
