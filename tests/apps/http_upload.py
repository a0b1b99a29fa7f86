"""Reads wsgi.input in 64 KiB pieces and reports the byte count and zlib.crc32 of the body."""

import json
import zlib

PIECE = 64 * 1024


def app(environ, start_response):
    stream = environ["wsgi.input"]
    count = 0
    crc = 0
    largest = 0
    while True:
        piece = stream.read(PIECE)
        if not piece:
            break
        count += len(piece)
        largest = max(largest, len(piece))
        crc = zlib.crc32(piece, crc)
    data = json.dumps({"bytes": count, "crc32": crc, "largest_read": largest}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
