"""flask: a Flask view returning small JSON (the app's iterable is Werkzeug's, not a list)."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(message="Hello, world!", framework="flask", n=42)
