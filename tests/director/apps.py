from django.apps import AppConfig


class DirectorConfig(AppConfig):
    name = "tests.director"
    label = "director_examples"
