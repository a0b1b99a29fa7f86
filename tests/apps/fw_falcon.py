"""The shared framework route set on Falcon (unmodified), for tests/test_frameworks.py.

Run: ``wizgy --chdir tests/apps fw_falcon:app``. Falcon's default handler turns /boom into its
own 500 and logs the traceback through ``wsgi.errors``.
"""

import hashlib

import falcon

STREAM_CHUNKS = [f"chunk {i} of 5\n".encode() for i in range(5)]


class JsonResource:
    def on_get(self, req, resp):
        resp.media = {"framework": "falcon", "ok": True}


class FormResource:
    def on_post(self, req, resp):
        fields = req.get_media()
        resp.media = {"name": fields["name"], "n": fields["n"]}


class UploadResource:
    def on_post(self, req, resp):
        for part in req.get_media():
            if part.name == "file":
                data = part.stream.read()
                resp.media = {
                    "filename": part.filename,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
                return
        raise falcon.HTTPBadRequest(title="no file field")


class StreamResource:
    def on_get(self, req, resp):
        def generate():
            yield from STREAM_CHUNKS

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = generate()


class CookieSetResource:
    def on_get(self, req, resp):
        resp.set_cookie("flavor", "oatmeal", secure=False)
        resp.media = {"set": "oatmeal"}


class CookieGetResource:
    def on_get(self, req, resp):
        resp.media = {"flavor": req.cookies.get("flavor")}


class BoomResource:
    def on_get(self, req, resp):
        raise RuntimeError("boom from falcon")


class SegmentResource:
    def on_get(self, req, resp, segment):
        resp.media = {"segment": segment}


app = falcon.App()
app.add_route("/json", JsonResource())
app.add_route("/form", FormResource())
app.add_route("/upload", UploadResource())
app.add_route("/stream", StreamResource())
app.add_route("/cookie/set", CookieSetResource())
app.add_route("/cookie/get", CookieGetResource())
app.add_route("/boom", BoomResource())
app.add_route("/path/{segment}", SegmentResource())

application = app
