import threading

from django.contrib.auth import authenticate, login, logout
from django.http import HttpResponseForbidden, JsonResponse
from django.urls import path

from sessiond.django import logout_everywhere

#: Two /race requests meet here after both have loaded the session.
race_barrier = threading.Barrier(2)


def cart(request):
    items = request.session.get("cart", [])
    return JsonResponse({"cart": items, "user": request.user.get_username() or None})


def add(request):
    items = request.session.get("cart", [])
    items.append(request.GET["item"])
    request.session["cart"] = items
    return JsonResponse({"cart": items})


def do_login(request):
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponseForbidden("bad login")
    login(request, user)
    return JsonResponse({"user": user.get_username()})


def do_logout(request):
    logout(request)
    return JsonResponse({})


def everywhere(request):
    if not request.user.is_authenticated:
        return HttpResponseForbidden("log in first")
    n = logout_everywhere(request.user)
    return JsonResponse({"ended": n})


def race(request):
    request.session.get("start")  # loads the session
    race_barrier.wait(timeout=20)  # both requests have loaded it
    request.session[request.GET["key"]] = request.GET["value"]
    return JsonResponse({})


def start(request):
    request.session["start"] = 1
    return JsonResponse({})


def show(request):
    return JsonResponse(dict(request.session.items()))


urlpatterns = [
    path("cart", cart),
    path("cart/add", add),
    path("login", do_login),
    path("logout", do_logout),
    path("logout-everywhere", everywhere),
    path("race", race),
    path("race/start", start),
    path("race/show", show),
]
