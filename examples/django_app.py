"""A one-file Django project served by wizgy: settings, URLs, views and the WSGI app.

Run with wizgy from the repository root::

    wizgy --chdir examples django_app:application

``GET /`` says hello as text; ``GET /greet/<name>`` answers JSON. There is no database and no
installed app: ``settings.configure`` is all the project needs.
"""

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="example-only-change-me",
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATABASES={},
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def index(request):
    return HttpResponse("Hello from Django!", content_type="text/plain; charset=utf-8")


def greet(request, name):
    return JsonResponse({"greeting": f"Hello, {name}!", "framework": "django"})


urlpatterns = [
    path("", index),
    path("greet/<str:name>", greet),
]

application = get_wsgi_application()
