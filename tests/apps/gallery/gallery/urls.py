from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path

from photos import views

urlpatterns = [
    path("", views.home, name="home"),
    path("upload", views.upload, name="upload"),
    path("uploads/<int:upload_id>", views.upload_detail, name="upload-detail"),
    path("heartbeats", views.heartbeats, name="heartbeats"),
    path("celery/ping", views.celery_ping, name="celery-ping"),
    path("admin/", admin.site.urls),
]

# In development only: in production nginx serves MEDIA_URL from MEDIA_ROOT.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
