#!/usr/bin/env python3
"""Validates the chart's Grafana dashboards and, optionally, runs their queries.

  hack/check-dashboards.py [PATH...]                 structure checks (default PATH:
                                                     charts/govcloud-operator/dashboards)
  hack/check-dashboards.py --prometheus URL          also run every panel query against
                                                     URL/api/v1/query and report empty results
  hack/check-dashboards.py --prometheus URL --require-data
                                                     ... and fail when a query returns no data

Structure checks (errors): valid JSON object; uid (1-40 of [A-Za-z0-9_-], unique across
files), title (unique), integer schemaVersion, panels (nested row panels included) with
unique integer ids, a built-in panel type (no external plugins), a gridPos (h, w, x, y;
inside the 24-column grid; no overlaps), targets each with a non-empty expr and a refId
unique in the panel, balanced brackets and quotes in every expr, Prometheus data sources
referenced only through the ${datasource} variable; templating: a variable "datasource" of
type datasource (query prometheus), unique variable names, query variables with a query
and the ${datasource} data source, and every $variable used in an expr or variable query
defined (Grafana's $__ variables excepted).

Query checks (--prometheus): before a query runs, $__rate_interval and $__interval become
1m, $__range 1h (override with --interval / --range), and every dashboard variable
($agency, ${cluster}, [[policy]], ...) the regex .+ (so use =~ with variables), or the
value given with --var NAME=VALUE. A query that Prometheus rejects is always an error.

Exit status: 0 ok; 1 structure errors, query errors, or (with --require-data) empty
results; 2 usage. Python 3 standard library only.
"""

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(REPO, "charts", "govcloud-operator", "dashboards")

# Panel types shipped with Grafana (10.x/11.x core plugins): anything else needs a plugin.
BUILTIN_PANELS = {
    "alertlist", "annolist", "barchart", "bargauge", "candlestick", "canvas", "dashlist", "datagrid",
    "flamegraph", "gauge", "geomap", "heatmap", "histogram", "logs", "news", "nodeGraph", "piechart",
    "row", "stat", "state-timeline", "status-history", "table", "text", "timeseries", "traces", "trend",
    "xychart",
}
# Panel types that need no queries.
NO_TARGETS = {"row", "text", "news", "dashlist", "alertlist", "annolist"}
VARIABLE_TYPES = {"query", "custom", "constant", "datasource", "interval", "textbox", "adhoc"}
DS_REFS = {"${datasource}", "$datasource", "[[datasource]]"}
UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# $name, ${name}, ${name:format}, [[name]], [[name:format]]
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)(?::[^\]]*)?\]\]")


def var_refs(text):
    for m in VAR_RE.finditer(text):
        yield m.group(1) or m.group(2) or m.group(3)


def balanced(expr):
    """Returns an error string if brackets or quotes in a PromQL expression do not balance."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack, quote, i = [], None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c == "#":  # comment to end of line
            nl = expr.find("\n", i)
            i = len(expr) if nl < 0 else nl
            continue
        elif c in "([{":
            stack.append(c)
        elif c in ")]}":
            if not stack or stack.pop() != pairs[c]:
                return f"unbalanced '{c}' at offset {i}"
        i += 1
    if quote:
        return f"unterminated {quote} string"
    if stack:
        return f"unclosed '{stack[-1]}'"
    return None


def ds_ok(ds):
    """A data source reference must go through the datasource variable (or Grafana's built-ins)."""
    if ds is None:
        return True
    if isinstance(ds, str):
        return ds in DS_REFS or ds in ("-- Grafana --", "-- Mixed --", "-- Dashboard --")
    if isinstance(ds, dict):
        uid = ds.get("uid")
        if ds.get("type") in ("grafana", "datasource", "__expr__"):
            return True
        return uid in DS_REFS
    return False


class Report:
    def __init__(self, path):
        self.path = path
        self.errors = []
        self.uid = self.title = ""
        self.panels = 0
        self.targets = []  # (panel id, panel title, refId, expr)
        self.variables = {}  # name -> variable object

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")


def walk_panels(panels):
    """Yields (panel, parent row or None) for top-level panels and panels inside rows."""
    for p in panels:
        yield p, None
        if isinstance(p, dict) and p.get("type") == "row":
            for c in p.get("panels") or []:
                yield c, p


def check_grid(r, panels, scope):
    boxes = []
    for p in panels:
        if not isinstance(p, dict):
            continue
        g = p.get("gridPos")
        where = f"{scope}panel {p.get('id')} ({p.get('title', '')!r})"
        if not isinstance(g, dict):
            r.err(where, "missing gridPos")
            continue
        if not all(isinstance(g.get(k), int) and not isinstance(g.get(k), bool) for k in ("h", "w", "x", "y")):
            r.err(where, f"gridPos needs integer h, w, x, y: {g}")
            continue
        if g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
            r.err(where, f"gridPos outside the 24-column grid: {g}")
            continue
        for other, og in boxes:
            if g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"] and \
                    g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]:
                r.err(where, f"gridPos {g} overlaps panel {other}")
        boxes.append((p.get("id"), g))


def check_dashboard(path):
    r = Report(path)
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        r.err("file", f"not valid JSON: {e}")
        return r
    if not isinstance(d, dict):
        r.err("file", "top level is not an object")
        return r
    if "dashboard" in d and "panels" not in d:
        r.err("file", "wrapped in {\"dashboard\": ...} (an API payload); store the dashboard model itself")
        return r

    r.uid, r.title = d.get("uid"), d.get("title")
    if not isinstance(r.uid, str) or not UID_RE.match(r.uid):
        r.err("uid", f"must be 1-40 characters of [A-Za-z0-9_-], got {r.uid!r}")
    if not isinstance(r.title, str) or not r.title.strip():
        r.err("title", "missing or empty")
    sv = d.get("schemaVersion")
    if not isinstance(sv, int) or isinstance(sv, bool):
        r.err("schemaVersion", f"must be an integer, got {sv!r}")
    elif not 30 <= sv <= 45:
        r.err("schemaVersion", f"{sv} is outside the expected range (about 39)")
    if d.get("id") not in (None,):
        r.err("id", "must be null (Grafana assigns it)")
    for req in d.get("__requires") or []:
        if req.get("type") == "panel" and req.get("id") not in BUILTIN_PANELS:
            r.err("__requires", f"external panel plugin {req.get('id')}")

    # Templating.
    tmpl = d.get("templating")
    vlist = tmpl.get("list") if isinstance(tmpl, dict) else None
    if not isinstance(vlist, list):
        r.err("templating", "missing templating.list")
        vlist = []
    var_queries = []
    for i, v in enumerate(vlist):
        where = f"templating.list[{i}]"
        if not isinstance(v, dict):
            r.err(where, "not an object")
            continue
        name, typ = v.get("name"), v.get("type")
        where = f"variable {name!r}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            r.err(where, "invalid name")
            continue
        if name in r.variables:
            r.err(where, "defined twice")
        r.variables[name] = v
        if typ not in VARIABLE_TYPES:
            r.err(where, f"unknown type {typ!r}")
        if typ == "datasource":
            if v.get("query") != "prometheus":
                r.err(where, f"datasource variable must have query 'prometheus', got {v.get('query')!r}")
        elif typ == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if not isinstance(q, str) or not q.strip():
                r.err(where, "query variable without a query")
            else:
                var_queries.append((where, q))
                b = balanced(q)
                if b:
                    r.err(where, f"query {q!r}: {b}")
            if not ds_ok(v.get("datasource")) or v.get("datasource") is None:
                r.err(where, "query variable must use the ${datasource} data source")
            if v.get("includeAll") and v.get("allValue") not in (None, "") and v.get("multi") is None:
                r.err(where, "includeAll without multi setting")
        elif typ in ("custom", "constant", "interval") and not isinstance(v.get("query"), str):
            r.err(where, f"{typ} variable needs a query string")
    dsv = r.variables.get("datasource")
    if not dsv or dsv.get("type") != "datasource":
        r.err("templating", "no variable 'datasource' of type datasource (query prometheus)")
    for where, q in var_queries:
        for ref in var_refs(q):
            if not ref.startswith("__") and ref not in r.variables:
                r.err(where, f"query uses undefined variable ${ref}")

    # Panels.
    panels = d.get("panels")
    if not isinstance(panels, list) or not panels:
        r.err("panels", "missing or empty")
        return r
    ids = {}
    check_grid(r, panels, "")
    for p in panels:
        if isinstance(p, dict) and p.get("type") == "row" and p.get("panels"):
            if not p.get("collapsed"):
                r.err(f"row {p.get('id')} ({p.get('title', '')!r})",
                      "an expanded row must not hold panels (they belong at the top level)")
            check_grid(r, p["panels"], f"row {p.get('id')}: ")
    for p, parent in walk_panels(panels):
        if not isinstance(p, dict):
            r.err("panels", "panel is not an object")
            continue
        pid, ptype, title = p.get("id"), p.get("type"), p.get("title")
        where = f"panel {pid} ({title!r})"
        if not isinstance(pid, int) or isinstance(pid, bool):
            r.err(where, "id must be an integer")
        elif pid in ids:
            r.err(where, f"duplicate id (also {ids[pid]!r})")
        else:
            ids[pid] = title
        if not isinstance(title, str):
            r.err(where, "missing title")
        if ptype not in BUILTIN_PANELS:
            r.err(where, f"panel type {ptype!r} is not built into Grafana (external plugin?)")
        if ptype == "row" and parent is not None:
            r.err(where, "row inside a row")
        if ptype != "row":
            r.panels += 1
        if not ds_ok(p.get("datasource")):
            r.err(where, f"data source {p.get('datasource')!r} is not the ${{datasource}} variable")
        targets = p.get("targets")
        if ptype in NO_TARGETS:
            continue
        if not isinstance(targets, list) or not targets:
            r.err(where, "no targets")
            continue
        refids = set()
        for j, tg in enumerate(targets):
            twhere = f"{where} target {j}"
            if not isinstance(tg, dict):
                r.err(twhere, "not an object")
                continue
            ref, expr = tg.get("refId"), tg.get("expr")
            if not isinstance(ref, str) or not ref:
                r.err(twhere, "missing refId")
            elif ref in refids:
                r.err(twhere, f"duplicate refId {ref}")
            else:
                refids.add(ref)
            if not ds_ok(tg.get("datasource")):
                r.err(twhere, f"data source {tg.get('datasource')!r} is not the ${{datasource}} variable")
            if not isinstance(expr, str) or not expr.strip():
                r.err(twhere, "missing expr")
                continue
            b = balanced(expr)
            if b:
                r.err(twhere, f"expr: {b}")
            for v in var_refs(expr):
                if not v.startswith("__") and v not in r.variables:
                    r.err(twhere, f"expr uses undefined variable ${v}")
            r.targets.append((pid, title, ref, expr))
    return r


def substitute(expr, variables, overrides, interval, rng):
    expr = re.sub(r"\$\{?__rate_interval\}?", interval, expr)
    expr = re.sub(r"\$\{?__interval\}?", interval, expr)
    expr = re.sub(r"\$\{?__range_s\}?", str(parse_seconds(rng)), expr)
    expr = re.sub(r"\$\{?__range\}?", rng, expr)

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in overrides:
            return overrides[name]
        if name in variables:
            return ".+"
        return m.group(0)

    return VAR_RE.sub(repl, expr)


def parse_seconds(d):
    m = re.fullmatch(r"(\d+)([smhdw])", d)
    if not m:
        raise SystemExit(f"bad duration {d!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def run_query(base, expr, timeout):
    url = base.rstrip("/") + "/api/v1/query"
    data = urllib.parse.urlencode({"query": expr}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
        except ValueError:
            return "error", f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SystemExit(f"check-dashboards: cannot query {url}: {e}")
    if body.get("status") != "success":
        return "error", f"{body.get('errorType', '')}: {body.get('error', '')}".strip(": ")
    res = body["data"]
    if res["resultType"] in ("vector", "matrix"):
        n = len(res["result"])
        return ("ok", f"{n} series") if n else ("empty", "no data")
    return "ok", res["resultType"]


def table(rows, headers):
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, row)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers).rstrip())
    print(line.format(*("-" * w for w in widths)).rstrip())
    for row in rows:
        print(line.format(*(str(c) for c in row)).rstrip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("paths", nargs="*", help="dashboard files or directories (default: %(default)s)",
                    default=[DEFAULT_DIR])
    ap.add_argument("--prometheus", metavar="URL", help="run every panel query against URL/api/v1/query")
    ap.add_argument("--require-data", action="store_true", help="fail when a query returns no data")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="value for a dashboard variable (default: the regex .+)")
    ap.add_argument("--interval", default="1m", help="value of $__interval and $__rate_interval (default 1m)")
    ap.add_argument("--range", dest="rng", default="1h", help="value of $__range (default 1h)")
    ap.add_argument("--timeout", type=float, default=15, help="seconds per query (default 15)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every query, not only the problems")
    args = ap.parse_args()
    if args.require_data and not args.prometheus:
        ap.error("--require-data needs --prometheus URL")
    overrides = {}
    for kv in args.var:
        if "=" not in kv:
            ap.error(f"--var expects NAME=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        overrides[k] = v
    parse_seconds(args.interval)
    parse_seconds(args.rng)

    files = []
    for p in args.paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".json"))
        elif os.path.isfile(p):
            files.append(p)
        else:
            ap.error(f"{p}: no such file or directory")
    if not files:
        print("check-dashboards: no dashboard JSON files found", file=sys.stderr)
        return 1

    reports = [check_dashboard(f) for f in files]
    seen_uid, seen_title = {}, {}
    for r in reports:
        if r.uid:
            if r.uid in seen_uid:
                r.err("uid", f"{r.uid!r} also used by {seen_uid[r.uid]}")
            seen_uid.setdefault(r.uid, os.path.basename(r.path))
        if r.title:
            if r.title in seen_title:
                r.err("title", f"{r.title!r} also used by {seen_title[r.title]}")
            seen_title.setdefault(r.title, os.path.basename(r.path))

    structure_errors = sum(len(r.errors) for r in reports)
    query_errors = empty = 0
    query_rows = {}
    if args.prometheus:
        for r in reports:
            rows = []
            for pid, title, ref, expr in r.targets:
                q = substitute(expr, r.variables, overrides, args.interval, args.rng)
                status, detail = run_query(args.prometheus, q, args.timeout)
                if status == "error":
                    query_errors += 1
                elif status == "empty":
                    empty += 1
                rows.append((pid, title, ref, status, detail, q))
            query_rows[r.path] = rows

    print("Dashboards")
    summary = []
    for r in reports:
        qr = query_rows.get(r.path, [])
        data = ""
        if args.prometheus:
            ok = sum(1 for x in qr if x[3] == "ok")
            data = f"{ok}/{len(qr)} with data"
        row = (os.path.relpath(r.path, REPO) if r.path.startswith(REPO + os.sep) else r.path, r.uid or "-",
               r.panels, len(r.targets), len(r.variables), "ok" if not r.errors else f"{len(r.errors)} error(s)")
        summary.append(row + ((data,) if args.prometheus else ()))
    table(summary, ["file", "uid", "panels", "queries", "variables", "structure"]
          + (["data"] if args.prometheus else []))

    for r in reports:
        if r.errors:
            print(f"\n{os.path.basename(r.path)}: structure errors")
            for e in r.errors:
                print(f"  - {e}")

    if args.prometheus:
        problems = []
        for r in reports:
            for pid, title, ref, status, detail, q in query_rows[r.path]:
                if status != "ok" or args.verbose:
                    problems.append((os.path.basename(r.path), pid, title[:40], ref, status, detail[:100]))
        if problems:
            print(f"\nQueries against {args.prometheus}" + ("" if args.verbose else " without data or failing"))
            table(problems, ["dashboard", "panel", "title", "ref", "result", "detail"])
            if not args.verbose:
                bad = {(os.path.basename(r.path), pid, ref): q for r in reports
                       for pid, title, ref, status, detail, q in query_rows[r.path] if status == "error"}
                for (f, pid, ref), q in bad.items():
                    print(f"  {f} panel {pid} {ref}: {q}")
        total = sum(len(v) for v in query_rows.values())
        print(f"\n{total} queries: {total - empty - query_errors} with data, {empty} empty, {query_errors} failed")

    failed = structure_errors > 0 or query_errors > 0 or (args.require_data and empty > 0)
    print(f"\ncheck-dashboards: {'FAIL' if failed else 'ok'} ({len(reports)} dashboards, "
          f"{structure_errors} structure errors"
          + (f", {query_errors} query errors, {empty} empty" if args.prometheus else "") + ")")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
