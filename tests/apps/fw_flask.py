"""The shared framework route set on Flask (unmodified), for tests/test_frameworks.py.

Run: ``wizgy --chdir tests/apps fw_flask:app``. Debug is off, so /boom is Flask's own 500 and
Flask logs the traceback through ``wsgi.errors``.
"""

import hashlib

from flask import Flask, Response, jsonify, request

app = Flask("fw_flask")
app.config.update(DEBUG=False, TESTING=False, PROPAGATE_EXCEPTIONS=False)

STREAM_CHUNKS = [f"chunk {i} of 5\n".encode() for i in range(5)]


@app.get("/json")
def json_view():
    return jsonify(framework="flask", ok=True)


@app.post("/form")
def form():
    return jsonify(name=request.form["name"], n=request.form["n"])


@app.post("/upload")
def upload():
    upload = request.files["file"]
    data = upload.read()
    return jsonify(
        filename=upload.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


@app.get("/stream")
def stream():
    def generate():
        yield from STREAM_CHUNKS

    return Response(generate(), mimetype="text/plain")


@app.get("/cookie/set")
def cookie_set():
    response = jsonify(set="oatmeal")
    response.set_cookie("flavor", "oatmeal")
    return response


@app.get("/cookie/get")
def cookie_get():
    return jsonify(flavor=request.cookies.get("flavor"))


@app.get("/boom")
def boom():
    raise RuntimeError("boom from flask")


@app.get("/path/<segment>")
def path(segment):
    return jsonify(segment=segment)


application = app
