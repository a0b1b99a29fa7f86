"""The shared framework route set on Bottle (unmodified), for tests/test_frameworks.py.

Run: ``wizgy --chdir tests/apps fw_bottle:app``. Debug is off; Bottle turns /boom into its own
500 page and writes the traceback to ``wsgi.errors``.
"""

import hashlib

import bottle

app = bottle.Bottle()
bottle.debug(False)

STREAM_CHUNKS = [f"chunk {i} of 5\n".encode() for i in range(5)]


@app.get("/json")
def json_view():
    return {"framework": "bottle", "ok": True}


@app.post("/form")
def form():
    return {
        "name": bottle.request.forms.getunicode("name"),
        "n": bottle.request.forms.getunicode("n"),
    }


@app.post("/upload")
def upload():
    field = bottle.request.files.get("file")
    data = field.file.read()
    return {
        "filename": field.raw_filename,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@app.get("/stream")
def stream():
    bottle.response.content_type = "text/plain"

    def generate():
        yield from STREAM_CHUNKS

    return generate()


@app.get("/cookie/set")
def cookie_set():
    bottle.response.set_cookie("flavor", "oatmeal")
    return {"set": "oatmeal"}


@app.get("/cookie/get")
def cookie_get():
    return {"flavor": bottle.request.get_cookie("flavor")}


@app.get("/boom")
def boom():
    raise RuntimeError("boom from bottle")


@app.get("/path/<segment>")
def segment(segment):
    return {"segment": segment}


application = app
