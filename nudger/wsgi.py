"""The WSGI entry point for gunicorn: `gunicorn nudger.wsgi:app`."""

from nudger import create_app

app = create_app()
