from flask import Flask


def init_app(app: Flask) -> None:
    from taskforce.health import tasks, views  # noqa: F401  (registers the task)

    app.register_blueprint(views.bp)
