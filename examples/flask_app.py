"""A small Flask app served by wizgy.

Run with wizgy from the repository root::

    wizgy --chdir examples flask_app:app

``GET /`` says hello as text; ``GET /greet/<name>`` answers JSON.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask!"


@app.get("/greet/<name>")
def greet(name):
    return jsonify(greeting=f"Hello, {name}!", framework="flask")


application = app
