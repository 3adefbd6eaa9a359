"""The recorder: a proxy on 127.0.0.1 that writes every provider call a job makes into a store.

    distill record --store runs/ -- python job.py          # wrap a job (job.run_job)
    distill record --store runs/ --serve                   # a long-running proxy (job.serve)
    with record_to("runs/") as rec: ...                    # in-process (session.record_to)
    Recorder("runs/", router=Router(load_routes(["s.student"]), replay=Replay.load("old-runs/")))

Modules: proxy (the HTTP server and the `answer` seam for routing), providers
(what differs between Anthropic and OpenAI), sse (stream assembly), rows (call ->
row, --redact), summary (the tally), session (Recorder, record_to), job (running
a job or a service around a Recorder), router (students answer, the teacher falls
back, shadow calls; the gating rule), replay (the teacher's answers from a store),
responses (provider responses the proxy writes itself).
"""

from distill_cli.recorder.job import JobNotStarted, run_job, serve
from distill_cli.recorder.proxy import Call, Outcome, Proxy
from distill_cli.recorder.replay import Replay
from distill_cli.recorder.router import Route, Router, load_routes
from distill_cli.recorder.rows import BadPattern, Redactor
from distill_cli.recorder.session import Recorder, record_to
from distill_cli.recorder.summary import RecordSummary

__all__ = ["BadPattern", "Redactor", "Call", "JobNotStarted", "Outcome", "Proxy", "RecordSummary", "Recorder", "Replay", "Route",
           "Router", "load_routes", "record_to", "run_job", "serve"]
