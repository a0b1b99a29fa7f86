"""django: a one-file Django project whose view renders a small template."""

from django.conf import settings

TEMPLATE = """<!doctype html>
<html><head><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1><ul>
{% for item in items %}<li>{{ item.name }}: {{ item.value }}</li>{% endfor %}
</ul></body>
</html>
"""

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="bench-only",
    INSTALLED_APPS=[],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATABASES={},
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "OPTIONS": {
                "loaders": [("django.template.loaders.locmem.Loader", {"index.html": TEMPLATE})]
            },
        }
    ],
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402

ITEMS = [{"name": f"item {i}", "value": i * i} for i in range(10)]


def index(request):
    return render(request, "index.html", {"title": "Hello, world!", "items": ITEMS})


urlpatterns = [path("", index)]

app = get_wsgi_application()
