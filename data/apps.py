from django.apps import AppConfig


class DataConfig(AppConfig):
    verbose_name = "Transcripts"
    name = "data"
