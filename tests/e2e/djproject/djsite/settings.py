"""Settings of the end-to-end test project: django-prodserver, maitre's app, admin, WhiteNoise.

``PRODUCTION_PROCESSES``: ``web`` is the README's configuration on a free port (port 0),
``flags`` spells flags as the waitress backend does, ``bad`` holds an unknown key.
"""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "maitre-e2e-tests-not-secret"
DEBUG = False
# /boom's exception reaches the server, so expose-tracebacks can be seen to work.
DEBUG_PROPAGATE_EXCEPTIONS = True
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prodserver",
    "maitre.contrib.django",
    "djsite",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "djsite.urls"
WSGI_APPLICATION = "djsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The admin login page renders without touching the database; nothing is migrated.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

USE_TZ = True
STATIC_URL = "static/"
# Serve straight from the apps' static directories: no collectstatic step in the tests.
WHITENOISE_USE_FINDERS = True

_LOCAL = {"host": "127.0.0.1", "port": "0"}
PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": "maitre.contrib.django_prodserver.MaitreServer",
        "ARGS": {**_LOCAL, "threads": "4", "channel-timeout": "60"},
    },
    "flags": {
        "BACKEND": "maitre.contrib.django_prodserver.MaitreServer",
        "ARGS": {**_LOCAL, "ident": "djsite-flags", "expose-tracebacks": None, "no-ipv6": None},
    },
    "bad": {
        "BACKEND": "maitre.contrib.django_prodserver.MaitreServer",
        "ARGS": {**_LOCAL, "bogus-knob": "3"},
    },
}
