#!/usr/bin/env python
"""manage.py of the end-to-end test project (as ``django-admin startproject`` makes it)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
