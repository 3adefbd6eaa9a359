"""The recorder: a proxy on 127.0.0.1 that writes every provider call a job makes into a store.

    distill record --store runs/ -- python job.py          # wrap a job (job.run_job)
    distill record --store runs/ --serve                   # a long-running proxy (job.serve)
    with record_to("runs/") as rec: ...                    # in-process (session.record_to)

Modules: proxy (the HTTP server and the `answer` seam for routing), providers
(what differs between Anthropic and OpenAI), sse (stream assembly), rows (call ->
row, --redact), summary (the tally), session (Recorder, record_to), job (running
a job or a service around a Recorder).
"""

from distill_cli.recorder.job import JobNotStarted, run_job, serve
from distill_cli.recorder.proxy import Call, Outcome, Proxy
from distill_cli.recorder.rows import BadPattern, Redactor
from distill_cli.recorder.session import Recorder, record_to
from distill_cli.recorder.summary import RecordSummary

__all__ = ["BadPattern", "Redactor", "Call", "JobNotStarted", "Outcome", "Proxy", "RecordSummary", "Recorder", "record_to", "run_job", "serve"]
