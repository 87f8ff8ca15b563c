"""A celery-director project's tasks and workflow file, run by django-workflows.

The task bodies follow what director's documentation and tests say each task
does (names in capitals, ``(*args, **kwargs)``); they also record each call
(tests.testapp's ``Call``) so the tests can see what director's calling
convention gave them. Only its ``tasks.py`` registers them, as in a project
where nothing else imports them.
"""
