"""The `calls` view every report query reads: the filtered examples with their day, hour, cost and flags.

`cost` is the recorded cost, or, with a price table, the cost of the row's tokens
at the price in force on its day. A failed call the provider did not bill counts
as costing nothing; a row with no price is left null, never summed as 0.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from distill_cli.calls import PRICE_UNVERIFIED_KEY, USAGE_ERROR_KEY
from distill_cli.prices import RATE_COLUMNS_SQL, TOKEN_COLUMNS, rate_values, sql_cost
from distill_cli.report.inputs import sql_str

EPOCH_DAY = date(1970, 1, 1)
# Metadata keys of a row priced with a modifier its response carried (prices.Modifiers.tags, calls.py).
MODIFIER_KEYS = ("speed", "inference_geo", "service_tier", PRICE_UNVERIFIED_KEY)
_HOUR_US = 3_600_000_000

# A call is `ok` when it was answered: no error status, no error recorded.
OK = "COALESCE(status, 200) < 400 AND error IS NULL"
# A call is high-stakes when its metadata has "high_stakes": true or "stakes": "high"; metadata that is not
# JSON is not. The LIKE keeps the JSON parser off the rows that cannot match.
_HIGH_STAKES = (
    "CASE WHEN {m} LIKE '%stakes%' THEN "
    "COALESCE(TRY(json_extract_string({m}, '$.high_stakes')) = 'true', false) "
    "OR COALESCE(lower(TRY(json_extract_string({m}, '$.stakes'))) = 'high', false) ELSE false END"
)


# A call was made through a batch (priced at batch rates) when its metadata says so: "service_tier": "batch" (the
# tier the response carried, calls.py), "batch": true, or a "batch_id". The LIKE keeps the parser off other rows.
_BATCHED = (
    "CASE WHEN {m} LIKE '%batch%' THEN "
    "COALESCE(TRY(json_extract_string({m}, '$.service_tier')) = 'batch', false) "
    "OR COALESCE(TRY(json_extract_string({m}, '$.batch')) = 'true', false) "
    "OR COALESCE(TRY(json_extract_string({m}, '$.batch_id')) IS NOT NULL, false) ELSE false END"
)


# Served at batch rates without a batch: OpenAI's flex tier (calls.py writes the response's service_tier).
_FLEX = "COALESCE({m} LIKE '%flex%' AND TRY(json_extract_string({m}, '$.service_tier')) = 'flex', false)"


def calls_view(con, since: datetime | None, task: str | None, reprice) -> None:
    """View `calls`: the filtered examples with `hour` and `day` (since 1970-01-01, UTC), `cost` and flags.

    `cost` is the recorded cost, or with `reprice` (a PriceTable) the cost of the
    row's tokens at the price in force on its day. Flags: `ok` (answered),
    `nocache` (no cache read or write), `stakes` (tagged high-stakes), `batched` (made through a batch, at batch
    rates: its metadata says so), `flex` (OpenAI flex tier, at batch rates too). `student_id`
    and `metadata` as recorded (a chain's tiers, report/chains.py).
    """
    where = []
    if since is not None:
        where.append(f"ts >= TIMESTAMPTZ {sql_str(since.isoformat())}")
    if task is not None:
        where.append(f"task = {sql_str(task)}")
    where_sql = ("WHERE " + " AND ".join(where)) if where else ""
    # Counts may be missing in files from elsewhere (union_by_name): they count as 0. A count nulled because the
    # provider's was no token count (metadata usage_error, calls.py) is unknown: such a call is never repriced.
    tokens = ", ".join(f"COALESCE({c}, 0) AS {c}" for c in TOKEN_COLUMNS)
    unknown = " OR ".join(f"{c} IS NULL" for c in TOKEN_COLUMNS)
    base = f"""SELECT * REPLACE ({tokens}, COALESCE(served_by, 'teacher') AS served_by, COALESCE(stream, false) AS stream),
                      epoch_us(ts) // {_HOUR_US} AS hour, epoch_us(ts) // {24 * _HOUR_US} AS day, {OK} AS ok,
                      COALESCE(({unknown}) AND metadata LIKE '%"{USAGE_ERROR_KEY}"%', false) AS counts_unknown
               FROM examples {where_sql}"""
    # A failed call the provider did not bill (an error and no tokens) costs nothing; it is not "unknown".
    unbilled = f"(NOT e.ok AND {' + '.join('e.' + c for c in TOKEN_COLUMNS)} = 0)"
    if reprice is None:
        cost, join = f"CASE WHEN e.cost_usd IS NULL AND {unbilled} THEN 0.0 ELSE e.cost_usd END", ""
    else:
        _rates_table(con, reprice, base)
        # A call priced with a modifier from its response (fast mode, a geography, a service tier; calls.py) keeps
        # its recorded cost, null included: the SQL below knows only the standard rates.
        modified = " OR ".join(f"""e.metadata LIKE '%"{k}"%'""" for k in MODIFIER_KEYS)
        cost = f"""CASE
                 WHEN e.counts_unknown THEN NULL
                 WHEN COALESCE({modified}, false) THEN e.cost_usd
                 WHEN r.model IS NULL THEN
                   -- a local student's cost is its own (0 for a classifier), not the price table's
                   CASE WHEN e.served_by = 'student' THEN e.cost_usd WHEN {unbilled} THEN 0.0 END
                 ELSE {sql_cost("e", "r")}
               END"""
        join = "LEFT JOIN rates r ON r.model = e.model AND r.day = e.day"
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW calls AS
        SELECT e.task, e.model, e.provider, e.served_by, e.stream, e.ok, e.ts, e.hour, e.day,
               {", ".join("e." + c for c in TOKEN_COLUMNS)},
               {cost} AS cost,
               e.cache_read_tokens + e.cache_write_5m_tokens + e.cache_write_1h_tokens = 0 AS nocache,
               {_HIGH_STAKES.format(m="e.metadata")} AS stakes,
               {_BATCHED.format(m="e.metadata")} AS batched,
               {_FLEX.format(m="e.metadata")} AS flex,
               e.output, e.input_hash, e.status, e.error, e.student_id, e.metadata
        FROM ({base}) e {join}"""
    )


def _rates_table(con, prices, base: str) -> None:
    """Table `rates`: the price in force for each (model, day) in the data; unknown models are left out."""
    pairs = con.execute(f"SELECT DISTINCT model, day FROM ({base}) WHERE model IS NOT NULL").fetchall()
    con.execute(f"CREATE OR REPLACE TEMP TABLE rates (model VARCHAR, day BIGINT, {RATE_COLUMNS_SQL})")
    rows = []
    for model, day in pairs:
        price = prices.lookup(model, at=EPOCH_DAY + timedelta(days=day))
        if price is None:
            prices.unknown.add(model)
            continue
        rows.append((model, day, *rate_values(price)))
    if rows:
        con.executemany(f"INSERT INTO rates VALUES ({', '.join(['?'] * len(rows[0]))})", rows)
