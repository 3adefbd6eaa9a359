"""`distill record --import`: JSONL logs a team already has -> example store rows.

Every line is parsed and checked before anything is written, so a `--strict`
import that finds a bad line leaves the store exactly as it was, and a lenient
one writes only the good lines, all at once, as new parts.

Flat-form lines (`{"input", "output", "model", ...}`) are gathered column by column
rather than as row dicts: bulk imports of millions of lines spend their time here.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from distill_cli import calls, canonical, remote, schemas, store
from distill_cli.errors import InputError
from distill_cli.files import write_atomically
from distill_cli.prices import (
    MAX_TOKENS,
    RATE_COLUMNS_SQL,
    PriceTable,
    Usage,
    rate_values,
    sql_cost,
    usage_from_anthropic,
    usage_from_openai,
)


@dataclass
class ImportResult:
    file: str
    store: str
    imported: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, problem)
    tasks: Counter = field(default_factory=Counter)
    unknown_models: list[str] = field(default_factory=list)
    run_id: str = ""
    recovered: int = 0  # rows of a killed recorder's journal turned into parts before the import
    quarantined: list = field(default_factory=list)  # store.Quarantined: its journal segments that could not be

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "store": self.store,
            "imported": self.imported,
            "skipped": len(self.skipped),
            "bad_lines": [{"line": n, "problem": p} for n, p in self.skipped],
            "tasks": dict(self.tasks),
            "unknown_models": self.unknown_models,
            "run_id": self.run_id,
            "recovered": self.recovered,
            "quarantined": [q.to_dict() for q in self.quarantined],
        }


class BadLine(ValueError):
    pass


_FLAT_COLUMNS = ("id", "ts", "task", "provider", "endpoint", "model", "input", "output", "request_json",
                 "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
                 "cache_write_1h_tokens", "cost_usd", "input_hash", "metadata")


_PLAIN_USAGE = frozenset({"input_tokens", "output_tokens"})


class _Lines:
    """The good lines of one file: flat ones as columns, request/response pairs as completed rows."""

    def __init__(self, prices: PriceTable, task: str | None, run_id: str) -> None:
        self.prices, self.task, self.run_id = prices, task, run_id
        self.flat = {c: [] for c in _FLAT_COLUMNS if c != "id"}
        self.pairs: list[dict] = []
        self.now = store.to_micros(time.time())
        self.provider_of = lru_cache(maxsize=None)(lambda model: calls.provider_of_model(model, prices))
        self.fingerprint = lru_cache(maxsize=None)(
            lambda model, provider: canonical.task_fingerprint({"model": model}, provider)
        )

    def add(self, obj) -> None:
        """Check one parsed line and keep it; BadLine says what is wrong with it."""
        if not isinstance(obj, dict):
            raise BadLine("not a JSON object")
        ts = _ts(obj.get("ts"))
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise BadLine("metadata must be a JSON object")
        line_task = obj.get("task")
        if line_task is not None and not isinstance(line_task, str):
            raise BadLine("task must be a string")
        if obj.get("request") is not None:
            self._add_pair(obj, ts, meta, self.task or line_task)
        elif "input" in obj or "output" in obj:
            self._add_flat(obj, ts, meta, self.task or line_task)
        else:
            raise BadLine('expected {"request", "response"} or {"input", "output", "model"}')

    def _add_flat(self, obj: dict, ts: int | None, meta: dict | None, task: str | None) -> None:
        model, text, output = obj.get("model"), obj.get("input"), obj.get("output")
        for key, value in (("input", text), ("output", output), ("model", model)):
            if not isinstance(value, str):
                raise BadLine(f"flat form needs a string {key!r}")
        raw_usage = obj.get("usage")
        if raw_usage is not None and not isinstance(raw_usage, dict):
            raise BadLine("usage must be a JSON object")
        if raw_usage is not None and ("prompt_tokens" in raw_usage or "completion_tokens" in raw_usage):
            usage = usage_from_openai(raw_usage)
        elif raw_usage is not None and raw_usage.keys() <= _PLAIN_USAGE and all(
            type(v) is int and 0 <= v <= MAX_TOKENS for v in raw_usage.values()
        ):
            usage = Usage(raw_usage.get("input_tokens", 0), raw_usage.get("output_tokens", 0))
        else:
            usage = usage_from_anthropic(raw_usage)
        if usage.problem is not None:
            raise BadLine(usage.problem)
        provider = self.provider_of(model)
        metadata = calls.metadata_json(meta) if meta else "{}"  # before any column grows: this may raise
        text = canonical.mask_secrets(text)
        request_json, input_hash = canonical.user_request(model, text)
        c = self.flat
        c["ts"].append(self.now if ts is None else ts)
        c["task"].append(task or self.fingerprint(model, provider))
        c["provider"].append(provider)
        c["endpoint"].append("/v1/messages" if provider == "anthropic" else "/v1/chat/completions")
        c["model"].append(model)
        c["input"].append(text)
        c["output"].append(canonical.mask_secrets(output))
        c["request_json"].append(request_json)
        c["input_tokens"].append(usage.input_tokens)
        c["output_tokens"].append(usage.output_tokens)
        c["cache_read_tokens"].append(usage.cache_read_tokens)
        c["cache_write_5m_tokens"].append(usage.cache_write_5m_tokens)
        c["cache_write_1h_tokens"].append(usage.cache_write_1h_tokens)
        # Without a usage record the cost is unknown, not 0.
        # Priced at the price in force on the call's day, not the import's.
        c["cost_usd"].append(self.prices.cost(model, usage, at=self.now if ts is None else ts)
                             if raw_usage is not None else None)
        c["input_hash"].append(input_hash)
        c["metadata"].append(metadata)

    def _add_pair(self, obj: dict, ts: int | None, meta: dict | None, task: str | None) -> None:
        request, response = obj.get("request"), obj.get("response")
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            raise BadLine("request must be a request body with a messages list")
        if not isinstance(response, dict):
            raise BadLine("response must be a response body object")
        status = obj.get("status", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise BadLine("status must be an HTTP status code (an integer from 100 to 599)")
        common = {"source": "import", "run_id": self.run_id, "status": status, "task": task, "prices": self.prices,
                  "ts": self.now if ts is None else ts}  # the call's own day prices it
        is_openai = "choices" in response or (isinstance(response.get("error"), dict) and response.get("type") != "error")
        if response.get("type") in ("message", "error") and not is_openai:
            row = calls.anthropic_row(request, response, **common)
        elif is_openai:
            row = calls.openai_row(request, response, **common)
        else:
            raise BadLine("response is neither a Messages API message nor a chat completion")
        if row["error"] and status == 200:
            raise BadLine("response is an error body but status is 200; give the line a \"status\"")
        if calls.usage_error(row) is not None:
            raise BadLine(calls.usage_error(row))
        row["ts"] = ts
        # the line's metadata, with what the row learned from the response (price modifiers) kept
        row["metadata"] = calls.metadata_json(json.loads(row["metadata"]) if row.get("metadata") else None, meta)
        try:
            self.pairs.append(store.complete_row(row))
        except (ValueError, TypeError) as e:
            raise BadLine(str(e)) from None

    def __len__(self) -> int:
        return len(self.flat["ts"]) + len(self.pairs)

    def table(self) -> pa.Table:
        flat = _flat_table({c: pa.array(v, type=schemas.EXAMPLES_SCHEMA.field(c).type) for c, v in self.flat.items()},
                           self.run_id, self.prices.version)
        if not self.pairs:
            return flat
        return pa.concat_tables([flat, store.rows_to_table(self.pairs)])


def _flat_table(columns: dict[str, pa.Array], run_id: str, price_version: str) -> pa.Table:
    """Flat-form rows as examples/1: the given columns, fresh ids, the import's constants, nulls elsewhere."""
    n = len(columns["ts"])
    constant = {"run_id": run_id, "source": "import", "served_by": "teacher", "status": 200,
                "stream": False, "price_version": price_version}
    arrays = []
    for f in schemas.EXAMPLES_SCHEMA:
        if f.name == "id":
            arrays.append(store.new_id_array(n))
        elif f.name in columns:
            arrays.append(columns[f.name].cast(f.type))
        elif f.name in constant:
            arrays.append(pa.repeat(pa.scalar(constant[f.name], type=f.type), n))
        else:
            arrays.append(pa.nulls(n, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schemas.EXAMPLES_SCHEMA)


# ---- the fast path: DuckDB reads the file, Python sees only the lines it must ----------------------------

# The flat form's keys. A line with any other key (request, ...) takes the line-by-line path.
_FAST_KEYS = ("input", "output", "model", "task", "ts", "usage", "metadata")
# ISO-8601 timestamps that DuckDB and `datetime.fromisoformat` read alike; any other goes to Python.
_FAST_TS = r"[1-9]\d{3}-\d\d-\d\d[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{3}|\.\d{6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?"
# A usage object of at most these two counts, each once, as DuckDB writes it back: no spaces, no exponent.
_PLAIN_USAGE_RE = (r'\{("input_tokens":\d{1,18}(,"output_tokens":\d{1,18})?'
                   r'|"output_tokens":\d{1,18}(,"input_tokens":\d{1,18})?)?\}')
_PLAIN_COUNT = """TRY_CAST(NULLIF(regexp_extract(j.usage::VARCHAR, '"{k}":(\\d+)', 1), '') AS BIGINT)"""

# One pass over the file. `fast` marks lines whose every field is plain: a string input, output and model, an
# optional string task, an optional timestamp in the format above, an optional usage of non-negative integer
# input/output counts; and no trailing comma (DuckDB's reader allows them, Python's does not), no secret to
# mask, no control character that the two JSON encoders spell differently. Lines that are not fast keep their
# text for Python.
_SCAN_SQL = """
CREATE TEMP TABLE scanned AS
WITH raw AS (
    SELECT json AS line, json_keys(json) AS keys,
           json_transform(json, '{{"input":"JSON","output":"JSON","model":"JSON","task":"JSON","ts":"JSON","usage":"JSON",'
                                '"metadata":"JSON"}}') AS j
    FROM read_ndjson_objects(?)
), typed AS (
    SELECT *,
           j.input->>'$' AS input, j.output->>'$' AS output, j.model->>'$' AS model, j.task->>'$' AS task,
           j.ts->>'$' AS ts_text,
           {in_count} AS input_tokens, {out_count} AS output_tokens
    FROM raw
), checked AS (
    SELECT *,
        -- NULL (a missing field) must count as "not fast", or the line would be in neither set
        COALESCE(list_has_all({keys}, keys) AND len(keys) = len(list_distinct(keys))  -- Python keeps a repeated key's last
        AND json_type(j.input) = 'VARCHAR' AND json_type(j.output) = 'VARCHAR' AND json_type(j.model) = 'VARCHAR'
        AND (j.task IS NULL OR json_type(j.task) = 'VARCHAR')
        AND (j.ts IS NULL OR (json_type(j.ts) = 'VARCHAR' AND regexp_full_match(ts_text, '{ts_re}')
                              AND TRY_CAST(ts_text AS TIMESTAMPTZ) IS NOT NULL))
        AND (j.usage IS NULL OR (regexp_full_match(j.usage::VARCHAR, '{usage_re}')
                                 AND COALESCE(input_tokens, 0) <= {max_tokens} AND COALESCE(output_tokens, 0) <= {max_tokens}))
        -- metadata reaches Python as DuckDB writes it back: numbers that DuckDB reads differently (inf, nan,
        -- integers beyond 64 bits) must not be in it
        AND (j.metadata IS NULL OR (json_type(j.metadata) = 'OBJECT'
                                    AND NOT regexp_matches(j.metadata::VARCHAR, '(?i)[:,\\[]\\s*[-+]?(nan|inf)|\\d{{19}}')))
        AND NOT regexp_matches(line, ',\\s*[\\]}}]')
        AND NOT regexp_matches(input || output, 'sk-|Bearer|://[^/\\s@]+@')
        AND NOT regexp_matches(input || model, '[\\x0b\\x0e\\x0f\\x1a-\\x1f]'), false) AS fast
    FROM typed
)
SELECT fast,
       CASE WHEN fast THEN NULL ELSE line END AS line,
       input, output, model, task, epoch_us(TRY_CAST(ts_text AS TIMESTAMPTZ)) AS ts, j.usage IS NOT NULL AS has_usage,
       COALESCE(input_tokens, 0) AS input_tokens, COALESCE(output_tokens, 0) AS output_tokens,
       0 AS cache_read_tokens, 0 AS cache_write_5m_tokens, 0 AS cache_write_1h_tokens,
       j.metadata::VARCHAR AS metadata_text
FROM checked
""".format(keys=list(_FAST_KEYS), ts_re=_FAST_TS, usage_re=_PLAIN_USAGE_RE, max_tokens=MAX_TOKENS,
           in_count=_PLAIN_COUNT.format(k="input_tokens"), out_count=_PLAIN_COUNT.format(k="output_tokens"))

_DAY_US = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)

# The canonical request and its hash, as `canonical.user_request` spells them (a test holds the two equal).
_BODY = """'{"messages":[{"content":' || to_json(s.input)::VARCHAR || ',"role":"user"}]'"""
_ROWS_SQL = f"""
SELECT COALESCE(s.ts, ?) AS ts, COALESCE(NULLIF(?, ''), NULLIF(s.task, ''), m.fingerprint) AS task,
       m.provider, m.endpoint, s.model, s.input, s.output,
       {_BODY} || ',"model":' || to_json(s.model)::VARCHAR || '}}' AS request_json,
       left(sha256({_BODY} || '}}'), 32) AS input_hash,
       s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_5m_tokens, s.cache_write_1h_tokens,
       CASE WHEN s.has_usage THEN {sql_cost("s", "r")} END AS cost_usd,
       s.metadata_text
FROM scanned s JOIN models m ON m.model = s.model
-- each call at the price in force on its own day (a line without a ts is the import's, `now`)
JOIN rates r ON r.model = s.model AND r.day = COALESCE(s.ts, ?) // {_DAY_US}
WHERE s.fast
"""


def _import_fast(file: Path, lines: _Lines) -> pa.Table | None:
    """The flat-form rows of `file` read by DuckDB, other lines through `lines`; None when the file needs the
    line-by-line path (a line DuckDB cannot read, or a bad line: only that path names its line number)."""
    import duckdb

    if any(c in str(file) for c in "*?[{"):  # DuckDB would read the name as a glob
        return None
    with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        # DuckDB takes a vertical tab or form feed between lines for whitespace; Python refuses them anywhere.
        if data.find(b"\x0b") >= 0 or data.find(b"\x0c") >= 0:
            return None
    con = store.connect()  # never downloads an extension
    try:
        con.execute("SET TimeZone = 'UTC'")  # a timestamp without an offset is UTC, as in `store.to_micros`
        try:
            con.execute(_SCAN_SQL, [os.path.abspath(file)])  # as given: DuckDB would expand a leading ~
        except duckdb.Error:
            return None
        total, fast, slow = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE fast), count(*) FILTER (WHERE NOT fast) FROM scanned"
        ).fetchone()
        if fast + slow != total:  # every line must go one way or the other; never silently neither
            return None
        models = [m for (m,) in con.execute("SELECT DISTINCT model FROM scanned WHERE fast").fetchall()]
        priced_models = {m for (m,) in con.execute("SELECT DISTINCT model FROM scanned WHERE fast AND has_usage").fetchall()}
        con.execute("CREATE TEMP TABLE models (model VARCHAR, provider VARCHAR, endpoint VARCHAR, fingerprint VARCHAR)")
        rows = []
        for model in models:
            provider = lines.provider_of(model)
            rows.append((model, provider, "/v1/messages" if provider == "anthropic" else "/v1/chat/completions",
                         lines.fingerprint(model, provider)))
        if rows:
            con.executemany("INSERT INTO models VALUES (?, ?, ?, ?)", rows)
        # The rates of each (model, day) the file has: a call is priced as of its own day.
        days = con.execute(f"SELECT DISTINCT model, COALESCE(ts, ?) // {_DAY_US} FROM scanned WHERE fast",
                           [lines.now]).fetchall()
        con.execute(f"CREATE TEMP TABLE rates (model VARCHAR, day BIGINT, {RATE_COLUMNS_SQL})")
        rates = []
        for model, day in days:
            price = lines.prices.lookup(model, at=_EPOCH_DAY + timedelta(days=day))
            if price is None and model in priced_models:
                lines.prices.unknown.add(model)
            rates.append((model, day, *rate_values(price)))
        if rates:
            con.executemany(f"INSERT INTO rates VALUES ({', '.join(['?'] * len(rates[0]))})", rates)
        table = con.sql(_ROWS_SQL, params=[lines.now, lines.task, lines.now]).to_arrow_table()
        for (line,) in con.execute("SELECT line FROM scanned WHERE NOT fast").fetchall():
            try:
                obj = json.loads(line)
                if "\\ud" in line.lower() and _has_lone_surrogate(obj):
                    return None
                lines.add(obj)
            except (ValueError, BadLine, RecursionError):
                return None
    finally:
        con.close()
    columns = {name: table[name] for name in table.column_names if name != "metadata_text"}
    try:
        columns["metadata"] = pa.array(_metadata_column(table["metadata_text"].to_pylist()), type=pa.string())
    except (ValueError, RecursionError):  # JSON Python would not read back: the line-by-line path names the line
        return None
    fast = _flat_table(columns, lines.run_id, lines.prices.version)
    return pa.concat_tables([fast, lines.table()])


def _has_lone_surrogate(obj) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _metadata_column(texts: list[str | None]) -> list[str]:
    """The metadata column of the fast rows, as `_Lines` stores it (credentials stripped, keys sorted)."""
    done: dict[str, str] = {"{}": "{}"}  # logs repeat their tags: each distinct text is worked out once
    out = []
    for text in texts:
        if text is None:
            out.append("{}")
            continue
        value = done.get(text)
        if value is None:
            value = done[text] = calls.metadata_json(json.loads(text)) if text != "{}" else "{}"
        out.append(value)
    return out


def _ts(value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadLine("ts must be an ISO-8601 string")
    try:
        return store.to_micros(value)
    except ValueError:
        raise BadLine(f"ts {value!r} is not ISO-8601") from None


def import_jsonl(
    store_path: str | Path,
    file: str | Path,
    *,
    prices: PriceTable,
    task: str | None = None,
    strict: bool = False,
) -> ImportResult:
    """Import a JSONL log into a store. With `strict`, any bad line raises InputError and nothing is written."""
    run_id = store.new_id()
    result = ImportResult(file=str(file), store=str(store_path), run_id=run_id)
    try:
        f = open(file, "rb")
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{file}: is a directory; --import takes a JSONL file") from None
    except OSError as e:
        raise InputError(f"{file}: cannot read ({e.strerror})") from None
    with f, tempfile.TemporaryDirectory(prefix="distill-import-") as spool:
        path = Path(file)
        if not f.seekable():  # a pipe (`zcat calls.jsonl.gz | distill record --import /dev/stdin`): read it once
            path = Path(spool) / "import.jsonl"
            with open(path, "wb") as copy:
                shutil.copyfileobj(f, copy, 1 << 20)
            f.close()
            f = open(path, "rb")
        with f:
            if f.read(4) == b"PAR1":
                return _import_parquet(store_path, path, result)
            f.seek(0)
            marker = _import_marker(store_path, f, file)
            f.seek(0)
            table = _import_fast(path, _Lines(prices, task, run_id)) if _starts_flat(f) else None
            if table is None:
                f.seek(0)
                table = _import_lines(f, file, _Lines(prices, task, run_id), strict, result)
    if not table.num_rows and result.skipped:
        first_line, first_problem = result.skipped[0]
        raise InputError(f"{file}: no importable lines ({len(result.skipped)} bad; line {first_line}: {first_problem})")
    _open_store(store_path, result)
    store.write_parts(store_path, table, run_id)
    if marker is not None:
        _write_marker(marker, file, table.num_rows)
    result.imported = table.num_rows
    result.tasks = Counter(dict(zip(*_value_counts(table["task"]))))
    result.unknown_models = sorted(prices.unknown)
    return result


def _starts_flat(f) -> bool:
    """Whether the first line with anything on it is a plain flat-form line (the case the fast path is for).

    A log whose first line has other keys (metadata, request, ...) most likely has them on every line,
    which the fast path would hand to Python one by one anyway: it goes to the line-by-line path at once.
    """
    for raw in f:
        if raw.strip():
            try:
                obj = json.loads(raw)
            except ValueError:
                return False
            return isinstance(obj, dict) and obj.keys() <= set(_FAST_KEYS) and ("input" in obj or "output" in obj)
    return False


def _import_lines(f, file, lines: _Lines, strict: bool, result: ImportResult) -> pa.Table:
    """Every line of `f` read and checked in Python; bad ones fail a strict import or are counted by number."""
    for n, raw in enumerate(f, start=1):
        try:
            obj = json.loads(raw)
            if (b"\\ud" in raw or b"\\uD" in raw) and _has_lone_surrogate(obj):
                raise ValueError("an unpaired UTF-16 surrogate escape, which is no text")
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            if not raw.strip():
                continue
            problem = f"not valid JSON ({str(e).splitlines()[0]})"
        except RecursionError:
            problem = "JSON nested too deeply to read"
        else:
            try:
                lines.add(obj)
                continue
            except BadLine as e:
                problem = str(e)
            except RecursionError:
                problem = "JSON nested too deeply to store"
        if strict:
            raise InputError(f"{file}: line {n}: {problem}")
        result.skipped.append((n, problem))
    return lines.table()


def _import_parquet(store_path, file, result: ImportResult) -> ImportResult:
    """An examples/1 Parquet file (a part of another store, an export): its rows, as they are, become a new part."""
    import pyarrow.parquet as pq

    schema = schemas.read_schema(file)
    schemas.check_kind(file, schemas.kind_of(schema), "examples", "record --import")
    schemas.check_columns(file, schema, schemas.EXAMPLES_SCHEMA)
    table = pq.read_table(file, columns=list(store.COLUMNS)).cast(schemas.EXAMPLES_SCHEMA)
    if table["ts"].null_count:
        raise InputError(f"{file}: {table['ts'].null_count:,} rows have no ts; every call needs its time")
    ids = table["id"]
    if ids.null_count or pc.count_distinct(ids).as_py() != table.num_rows:
        raise InputError(f"{file}: {table.num_rows - pc.count_distinct(ids).as_py():,} rows repeat an id or "
                         "have none; rows are unique by id")
    _open_store(store_path, result)
    already = _ids_already_in(store_path, table)
    if already:
        raise InputError(f"{file}: {already:,} of its {table.num_rows:,} ids are already in {store_path} "
                         "(imported before?); nothing imported")
    store.write_parts(store_path, table, result.run_id)
    result.imported = table.num_rows
    result.tasks = Counter(dict(zip(*_value_counts(table["task"])))) if table.num_rows else Counter()
    return result


def _ids_already_in(store_path, table: pa.Table) -> int:
    """How many of the table's ids the store already has (only parts whose id range meets the table's are read)."""
    con = store.connect()
    try:
        if not store.examples_view(con, [store_path], "record --import"):
            return 0
        con.register("incoming", table.select(["id"]))
        low, high = pc.min_max(table["id"]).values()
        return con.execute("SELECT count(*) FROM incoming WHERE id IN (SELECT id FROM examples WHERE id BETWEEN ? AND ?)",
                           [low.as_py(), high.as_py()]).fetchone()[0]
    finally:
        con.close()


IMPORTS_DIR = "_imports"  # in a local store: one marker per JSONL file imported, named by its sha256


def _import_marker(store_path, f, file) -> Path | None:
    """Where this file's import marker goes; InputError when the same bytes were imported into the store before.

    JSONL lines get new ids on every import (their ids are made here), so the id check that refuses a Parquet
    part imported twice cannot see a log imported twice: the file's digest can. Remote stores keep no marker.
    """
    if remote.is_remote(store_path):
        return None
    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    marker = Path(store_path) / IMPORTS_DIR / f"{digest.hexdigest()}.json"
    try:
        before = json.loads(marker.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # never imported (or no store there: opening it says so)
        return marker
    except (OSError, ValueError):
        before = {}
    when = before.get("imported_at", "before") if isinstance(before, dict) else "before"
    calls_before = before.get("calls") if isinstance(before, dict) else None
    raise InputError(
        f"{file}: these same bytes were imported into {store_path} {'at ' + when if when != 'before' else 'before'}"
        + (f" ({calls_before} calls)" if calls_before is not None else "")
        + "; importing them again would count every call twice; nothing imported"
    )


def _write_marker(marker: Path, file, calls_imported: int) -> None:
    from datetime import datetime, timezone

    data = {"file": str(file), "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "calls": calls_imported}
    write_atomically(marker, lambda out: out.write(json.dumps(data).encode()))


def _open_store(store_path, result: ImportResult) -> None:
    """Open the store as every writer does: a killed recorder's journal becomes parts first."""
    recovery = store.open_for_writing(store_path)
    result.recovered, result.quarantined = recovery.rows, recovery.quarantined


def _value_counts(column) -> tuple[list, list]:
    counts = column.value_counts()
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()
