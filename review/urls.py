"""Staff-only pages, mounted at /admin/review/ before the admin itself."""
from django.contrib import admin
from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("conversations/<int:pk>/transcript/", admin.site.admin_view(views.transcript), name="transcript"),
    path("overview/", admin.site.admin_view(views.ratings_overview), name="overview"),
    path("compare/", admin.site.admin_view(views.compare), name="compare"),
    path("compare/<int:pk>/", admin.site.admin_view(views.compare), name="compare_item"),
    path("compare/scoreboard/", admin.site.admin_view(views.compare_scoreboard), name="compare_scoreboard"),
]
