"""The one view: read the session's counter, add one, store it (a read and a write each request)."""

from django.http import HttpResponse
from django.urls import path


def bump(request):
    n = request.session.get("n", 0) + 1
    request.session["n"] = n
    return HttpResponse(str(n), content_type="text/plain")


urlpatterns = [path("", bump)]
