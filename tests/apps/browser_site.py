"""A small Django site for tests/test_deploy_browser.py: a page with a stylesheet, an image and
a form protected by Django's CSRF middleware; the POST sets a cookie and redirects to a page that
greets the name it read back from that cookie.

Run: ``wizgy --static /static=DIR --chdir tests/apps browser_site:application`` (the test writes
DIR's site.css and logo.png).
"""

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="browser-site-test-only-not-secret",
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    DATABASES={},
    CSRF_COOKIE_SECURE=True,
    USE_TZ=True,
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.shortcuts import redirect  # noqa: E402
from django.template import engines  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

HOME = """<!doctype html>
<html><head><title>wizgy site</title><link rel="stylesheet" href="/static/site.css"></head>
<body><h1 id="title">Welcome</h1><img id="logo" src="/static/logo.png" alt="logo">
<form method="post" action="/greet">{% csrf_token %}
<input name="name" id="name"><button type="submit">Greet</button></form>
<p id="secure">{{ secure }}</p></body></html>
"""
THANKS = """<!doctype html>
<html><head><title>thanks</title><link rel="stylesheet" href="/static/site.css"></head>
<body><p id="greeting">Hello, {{ name }}!</p><p id="client">{{ client }}</p></body></html>
"""


def render(source: str, request, **context) -> HttpResponse:
    return HttpResponse(engines["django"].from_string(source).render(context, request))


@require_GET
def home(request):
    return render(HOME, request, secure=request.is_secure())


@require_POST
def greet(request):
    response = redirect("/thanks")
    response.set_cookie("greeting", request.POST["name"], secure=True, samesite="Lax")
    return response


@require_GET
def thanks(request):
    name = request.COOKIES.get("greeting", "nobody")
    return render(THANKS, request, name=name, client=request.META["REMOTE_ADDR"])


urlpatterns = [path("", home), path("greet", greet), path("thanks", thanks)]

application = get_wsgi_application()
