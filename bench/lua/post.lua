-- The post workload: every request carries a 64 KiB body (Content-Length framed).
wrk.method = "POST"
wrk.body = string.rep("p", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
