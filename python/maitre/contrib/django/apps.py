"""The app config of :mod:`maitre.contrib.django`."""

from django.apps import AppConfig


class MaitreConfig(AppConfig):
    """Registers the ``maitre`` management command; no models, no settings."""

    name = "maitre.contrib.django"
    # The default label would be "django", which reads as Django's own.
    label = "maitre"
    verbose_name = "maitre WSGI server"
