"""The test app: a stdlib HTTP server that answers with its release's version.txt (or a config value).

`/health` fails when the version is "broken"; every start prints a line, for `bridge logs`.
"""
import http.server
import os

VERSION = open("version.txt").read().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health" and VERSION == "broken":
            self.send_error(500)
            return
        body = os.environ.get("GREETING", "") if self.path == "/config" else VERSION
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


print("app %s listening on %s" % (VERSION, os.environ["PORT"]), flush=True)
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
