"""The shared framework route set as a one-file Django project, for tests/test_frameworks.py.

Run: ``wizgy --chdir tests/apps fw_django:application``. DEBUG is off, so /missing and /boom
are Django's own 404 and 500 pages; ``django.request`` errors (the /boom traceback) are logged
to stderr, which is wizgy's error log.
"""

import hashlib

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="fw-django-test-only-not-secret",
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
    DATABASES={},
    USE_TZ=True,
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {
            "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}
        },
    },
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

STREAM_CHUNKS = [f"chunk {i} of 5\n".encode() for i in range(5)]


@require_GET
def json_view(request):
    return JsonResponse({"framework": "django", "ok": True})


@require_GET
def secure(request):
    # what a site behind a proxy relies on: is_secure() from wsgi.url_scheme, the client address
    return JsonResponse(
        {"is_secure": request.is_secure(), "remote_addr": request.META["REMOTE_ADDR"]}
    )


@csrf_exempt
@require_POST
def form(request):
    return JsonResponse({"name": request.POST["name"], "n": request.POST["n"]})


@csrf_exempt
@require_POST
def upload(request):
    uploaded = request.FILES["file"]
    data = uploaded.read()
    return JsonResponse(
        {"filename": uploaded.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    )


@require_GET
def stream(request):
    def generate():
        yield from STREAM_CHUNKS

    return StreamingHttpResponse(generate(), content_type="text/plain")


@require_GET
def cookie_set(request):
    response = JsonResponse({"set": "oatmeal"})
    response.set_cookie("flavor", "oatmeal")
    return response


@require_GET
def cookie_get(request):
    return JsonResponse({"flavor": request.COOKIES.get("flavor")})


@require_GET
def boom(request):
    raise RuntimeError("boom from django")


@require_GET
def segment(request, segment):
    return JsonResponse({"segment": segment})


urlpatterns = [
    path("json", json_view),
    path("secure", secure),
    path("form", form),
    path("upload", upload),
    path("stream", stream),
    path("cookie/set", cookie_set),
    path("cookie/get", cookie_get),
    path("boom", boom),
    path("path/<str:segment>", segment),
]

application = get_wsgi_application()
app = application
