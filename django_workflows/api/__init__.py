"""REST API of django-workflows (Django REST framework, django-filter, drf-spectacular).

Mount it with one include: ``path("api/", include("django_workflows.api.urls"))``.
"""
