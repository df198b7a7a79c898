"""A fast, faithful local simulator of the Gameball Batch API (SPEC §4, ``shared/seeds``).

It serves ``POST /api/v4.0/integrations/batch/customers`` (``/api/v4/...`` too),
``GET`` and ``DELETE /api/v4.0/integrations/batch/{jobId}`` with the seeds'
headers, bodies and status documents, plus unauthenticated ``/_sim/*``
control endpoints for tests, the demo and the benchmark. Every other batch
operation (``orders``, ``cashback``, ``redeem``, ``events``,
``balance-adjustment``) is served the same way, through the same gate,
faults and job store, with its own request (:mod:`.requests`) and per-record
answers and logs (:mod:`.books`: duplicate keys, unknown customers, future
times, double applications).

Decisions worth knowing:

* **Lazy, clock-driven jobs.** No background tasks: every record of a job
  has a finish time (the first 10 % of ``job_duration_seconds`` the job is
  queued, then its records finish one after another in body order, evenly
  spread over the rest). Every status, stop and ``/_sim`` read *settles* the
  world up to "now": the records of every unfinished job whose finish time
  has passed are applied, across jobs in finish-time order. So the applied
  log is in real-time order even when a client never polls a job (a job
  created by a POST that then answered 5xx, or one abandoned by a killed
  client, still runs, exactly like the real service), and a later job never
  overtakes an earlier one in the log just because it was polled first.
  With a duration of 0 a job is complete at the first look.
* **Counts follow the seeds**, which show ``totalCount`` = records processed
  so far (0 while queued), ``finishedCount`` = successful ones and
  ``errorCount`` = failed ones.
* **Outcomes are drawn at submission** from ``random.Random(seed)``, so a run
  is reproducible: a record with an ``email`` lacking "@" fails with
  "Invalid email address" (a deterministic way to provoke rejections), others
  fail at ``record_failure_rate`` with "Failed to create customer". A job
  chosen by ``job_failure_rate`` stays queued for its whole duration and then
  ends ``failed`` with every record in ``failed`` under ``message`` (the seeds
  use both ``message`` and ``error`` there), ``startedAt`` null and nothing
  applied. A stuck job (``stuck_job_rate``) finishes its first half and then
  stays ``running`` until it is stopped. A job chosen by
  ``stopped_job_rate`` finishes its first half and then ends ``stopped`` by
  itself (the API stopped it), so its second half must be resubmitted.
* **Faults are drawn before anything else** (after the latency): one draw
  gives 429 below ``rate_limit_rate`` and 500/502/503 below
  ``rate_limit_rate + server_error_rate``. Half of the 5xx on a POST happen
  after the job was created: the job runs, the client only sees the error.
  ``Retry-After`` is sent in (possibly fractional) seconds so tests stay
  fast; integral values are sent as integers.
* **Rate limits, when asked** (``limit_*``, ``--documented-limits``): per
  API key, across all clients, in sliding windows (the strict reading of
  "30 per second and 360 per 30 seconds", see :mod:`.limits`), answered 429
  ``Too many requests`` like the real API, with the seconds until a request
  would be admitted as ``Retry-After`` or, like the real API's
  documentation, without it (``limit_retry_after``). Checked after the
  credentials; a refused request is not counted.
* **Speed**: a POST's body is checked in C by msgspec (:mod:`.gate`), with
  pydantic's ``BatchRequest`` only for a body the gate refuses; the
  customers are kept as the orjson-parsed dicts, results grow by appending,
  records finishing together are ordered with one sort, and the document of
  a terminal job is serialised once and cached.

Controls (no auth): ``GET /_sim/stats``; ``GET /_sim/applied?since=N[&limit=M]``
-> ``{"applied": [{"seq", "customerId", "customer", "jobId", "submittedAt", "at"},
...], "next": N'}`` (``seq`` counts from 0, so ``since`` is an index;
``submittedAt`` is the wall-clock time its job was submitted, ``at`` the time
the record finished); ``GET /_sim/rejected?since=N[&limit=M]`` -> the same for
every record the API reported failed (``customerId``, ``jobId``, ``error``:
per-record failures and the records of failed jobs); ``GET|POST /_sim/config``
(a JSON object of :class:`SimulatorConfig` fields, checked, 400 otherwise;
a new ``seed`` re-seeds); ``POST /_sim/reset`` (jobs, log and counters go,
the configuration stays and the seed restarts). ``?operation=orders`` (any
other operation) on ``/_sim/applied`` and ``/_sim/rejected`` reads that
operation's logs instead; ``/_sim/stats`` ``operations`` holds their counts.

Layout: :mod:`.config` (what it does), :mod:`.state` (jobs on a clock, the
applied log, counters), :mod:`.books` (the other operations' logs and per-record
answers), :mod:`.requests` (their request models), :mod:`.limits` (the key's
rate limits), :mod:`.app` (the HTTP endpoints), :mod:`.gate` (the fast
validation of a batch of customers), :mod:`.profiles`
(tags and read-back), :mod:`.runner` (the HTTP server: :class:`RunningSimulator` on a
thread for tests and the demo), :mod:`.cli` (``customer-sync simulate``: its switches, banner
and ``main``; the benchmark runs it as a process of its own and uses the controls).
"""

from service.gameball.simulator.app import create_app
from service.gameball.simulator.config import DOCUMENTED_LIMITS, SimulatorConfig
from service.gameball.simulator.runner import RunningSimulator
from service.gameball.simulator.state import (
    AppliedRecord,
    Job,
    RejectedRecord,
    SimulatorState,
)

__all__ = [
    "DOCUMENTED_LIMITS",
    "AppliedRecord",
    "Job",
    "RejectedRecord",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorState",
    "create_app",
]
