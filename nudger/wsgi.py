"""The WSGI entry point for gunicorn: `gunicorn nudger.wsgi:app`.

It refuses to start without NUDGER_SMTP_URL: a production server must not
fall back to capturing mail, which would publish every email at /outbox.
"""

from nudger import create_app
from nudger.config import load_settings, require_mail

app = create_app(require_mail(load_settings()))
