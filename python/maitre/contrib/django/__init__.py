"""Django app: add ``"maitre.contrib.django"`` to ``INSTALLED_APPS`` for ``manage.py maitre``.

``python manage.py maitre [OPTIONS]`` serves the project's ``WSGI_APPLICATION`` with every
option of ``maitre-serve``; ``--reload`` restarts it on code changes.
"""
