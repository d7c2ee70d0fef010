from django.contrib import admin
from django.contrib.staticfiles.views import serve
from django.urls import path, re_path

from djangoapp import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.home, name="home"),
    path("about/", views.about, name="about"),
    path("items/", views.items, name="items"),
    path("items/<int:n>/", views.item, name="item"),
    path("contact/", views.contact, name="contact"),
    path("db/", views.db, name="db"),
    # diagnostics: the readiness probe, the worker's pid, a full collection
    path("block", views.block),
    path("pid", views.pid),
    path("gc", views.gc_view),
    # the admin's static files through the finders, as `runserver` does (DEBUG is off)
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
