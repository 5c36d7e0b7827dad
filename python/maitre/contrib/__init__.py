"""Integrations with web frameworks; each needs its framework installed.

* :mod:`maitre.contrib.django_prodserver`: a django-prodserver backend.
* :mod:`maitre.contrib.django`: a Django app adding ``manage.py maitre``.
"""
