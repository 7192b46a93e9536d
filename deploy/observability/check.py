#!/usr/bin/env python3
"""Structural checks of deploy/observability that promtool cannot do.

Run by scripts/checks/observability.sh, one subcommand per check; each
prints nothing and exits 0 when all is well, or prints what is wrong and
exits 1. Needs PyYAML.

  queries      the dashboard and the rules use only metric names of the
               contract (metrics.txt), Prometheus' own, or recorded ones
  dashboard    anatomy.json is a Grafana dashboard with a Prometheus
               datasource variable that every panel and query uses
  runbooks     every alert has severity, summary, description and a
               runbook_url whose anchor is a heading of docs/observability.md
  collector    otel-collector.yaml has the receivers, processors, exporters
               and pipeline the docs promise, and nothing undefined
  dashboard-rules OUT
               writes the dashboard's queries to OUT as recording rules
               (Grafana's variables replaced) for `promtool check rules`
  k8s-config OUT
               writes to OUT a copy of prometheus-k8s.yml that a promtool
               built without Kubernetes discovery (Debian's) can check, after
               checking the kubernetes_sd_configs it leaves out
  manifests FILE [--app]
               checks rendered Kubernetes manifests of the overlay; --app
               when FILE also holds the application (../kind or a stub)
"""

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROM = HERE / "prometheus"
DOCS = ROOT / "docs" / "observability.md"
OBS_NS = "anatomy-observability"
APP_NS = "anatomy"
OTLP_ENDPOINT = "http://otel-collector.anatomy-observability.svc.cluster.local:4317"

errors = []


def fail(msg):
    errors.append(msg)


# ---------------------------------------------------------------- queries

PROMQL_WORDS = {
    # aggregations, operators, keywords
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk",
    "bottomk", "quantile", "count_values", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "atan2", "inf", "nan", "Inf", "NaN",
}


def contract_names():
    names = set()
    for line in (HERE / "metrics.txt").read_text().splitlines():
        line = line.split("#", 1)[0].split()
        if not line:
            continue
        name, kind = line[0], line[1]
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def rule_groups():
    for path in sorted((PROM / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def strip_promql(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)          # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)          # ranges, subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)   # Grafana variables
    return expr


def metric_names(expr):
    """The metric names an expression selects (functions and keywords left out)."""
    stripped = strip_promql(expr)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", stripped):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_queries(dash):
    for panel in dash.get("panels", []):
        for sub in [panel] + panel.get("panels", []):
            for target in sub.get("targets", []):
                if "expr" in target:
                    yield f"panel {sub.get('title')!r}", target["expr"]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*", query or "")
        yield f"variable {var.get('name')!r}", (m.group(1) if m else query)


def check_queries():
    allowed = contract_names() | {"up", "ALERTS", "ALERTS_FOR_STATE"}
    recorded = {rule["record"] for _, rule in rule_groups() if "record" in rule}
    allowed |= recorded
    dash = json.loads((HERE / "grafana" / "anatomy.json").read_text())
    sources = list(dashboard_queries(dash))
    sources += [(f"{p.name} {r.get('alert') or r.get('record')}", r["expr"]) for p, r in rule_groups()]
    used = set()
    for where, expr in sources:
        names = metric_names(expr)
        used |= names
        for name in sorted(names - allowed):
            fail(f"{where}: {name} is not a metric of metrics.txt, nor recorded by rules/")
    for name in sorted(contract_names() - used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if not any(u.startswith(base) for u in used):
            fail(f"metric {name} of metrics.txt is used by no panel and no rule")


# -------------------------------------------------------------- dashboard

def check_dashboard():
    dash = json.loads((HERE / "grafana" / "anatomy.json").read_text())
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            fail(f"anatomy.json: no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("anatomy.json: no variable `datasource` of type datasource, query prometheus")
    ids = []
    for panel in dash.get("panels", []):
        ids.append(panel.get("id"))
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            fail(f"panel {panel.get('title')!r}: no queries")
        for item in [panel] + panel.get("targets", []):
            if item.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"panel {panel.get('title')!r}: datasource is not ${{datasource}}")
        if not {"h", "w", "x", "y"} <= set(panel.get("gridPos", {})):
            fail(f"panel {panel.get('title')!r}: incomplete gridPos")
    if len(ids) != len(set(ids)):
        fail("anatomy.json: panel ids are not unique")
    provider = yaml.safe_load((HERE / "grafana" / "provisioning" / "dashboards" / "anatomy.yaml").read_text())
    if not provider.get("providers") or provider["providers"][0].get("type") != "file":
        fail("grafana/provisioning/dashboards/anatomy.yaml: no file provider")


def write_dashboard_rules(out):
    """The dashboard's queries as a rule file, so promtool parses them."""
    dash = json.loads((HERE / "grafana" / "anatomy.json").read_text())
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "${shard}": ".*", "$shard": ".*"}
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries(dash)):
        if where.startswith("variable"):
            continue
        for var, value in subst.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            fail(f"{where}: unknown Grafana variable in {expr}")
        rules.append({"record": f"dashboard:query:{i}", "expr": expr})
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))


# --------------------------------------------------------------- runbooks

def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_runbooks():
    if not DOCS.exists():
        fail(f"{DOCS.relative_to(ROOT)} is missing")
        return
    anchors = {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", DOCS.read_text(), re.M)}
    for path, rule in rule_groups():
        if "alert" not in rule:
            continue
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in ("page", "ticket"):
            fail(f"{name}: severity must be page or ticket")
        ann = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                fail(f"{name}: no {key} annotation")
        url = ann.get("runbook_url", "")
        page, _, anchor = url.partition("#")
        if page != "docs/observability.md" or anchor not in anchors:
            fail(f"{name}: runbook_url {url} is not a heading of docs/observability.md")


# -------------------------------------------------------------- collector

KNOWN = {
    "receivers": {"otlp"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"otlp", "otlphttp", "debug"},
    "extensions": {"health_check", "pprof", "zpages"},
}


def check_collector():
    path = HERE / "otel-collector.yaml"
    cfg = yaml.safe_load(path.read_text())
    for section in ("receivers", "processors", "exporters", "service"):
        if not isinstance(cfg.get(section), dict):
            fail(f"otel-collector.yaml: no {section}")
    if errors:
        return
    for section, known in KNOWN.items():
        for name in cfg.get(section) or {}:
            if name.split("/", 1)[0] not in known:
                fail(f"otel-collector.yaml: {section}.{name}: unknown component type")
    protocols = (cfg["receivers"].get("otlp") or {}).get("protocols") or {}
    for proto, port in (("grpc", ":4317"), ("http", ":4318")):
        endpoint = (protocols.get(proto) or {}).get("endpoint", "")
        if not endpoint.endswith(port):
            fail(f"otel-collector.yaml: otlp receiver {proto} must listen on {port}, not {endpoint!r}")
    if "batch" not in cfg["processors"]:
        fail("otel-collector.yaml: no batch processor")
    jaeger = cfg["exporters"].get("otlp/jaeger") or {}
    if "jaeger:4317" not in str(jaeger.get("endpoint", "")):
        fail("otel-collector.yaml: otlp/jaeger must export to jaeger:4317")
    if not (jaeger.get("tls") or {}).get("insecure"):
        fail("otel-collector.yaml: otlp/jaeger needs tls.insecure (Jaeger listens in plaintext)")
    if "debug" not in cfg["exporters"]:
        fail("otel-collector.yaml: no debug exporter")
    service = cfg["service"]
    pipelines = service.get("pipelines") or {}
    traces = pipelines.get("traces") or {}
    for key, must in (("receivers", "otlp"), ("processors", "batch"),
                      ("exporters", "otlp/jaeger"), ("exporters", "debug")):
        if must not in (traces.get(key) or []):
            fail(f"otel-collector.yaml: the traces pipeline has no {must} in {key}")
    procs = traces.get("processors") or []
    if "memory_limiter" in procs and procs[0] != "memory_limiter":
        fail("otel-collector.yaml: memory_limiter must come first in the pipeline")
    used = {s: set() for s in ("receivers", "processors", "exporters")}
    for pname, pipe in pipelines.items():
        if pname.split("/", 1)[0] not in ("traces", "metrics", "logs"):
            fail(f"otel-collector.yaml: unknown pipeline type {pname}")
        for section in used:
            for comp in pipe.get(section) or []:
                used[section].add(comp)
                if comp not in cfg[section]:
                    fail(f"otel-collector.yaml: pipeline {pname} uses undefined {section}.{comp}")
    for section, names in used.items():
        for comp in set(cfg[section]) - names:
            fail(f"otel-collector.yaml: {section}.{comp} is defined but in no pipeline")
    for ext in service.get("extensions") or []:
        if ext not in (cfg.get("extensions") or {}):
            fail(f"otel-collector.yaml: service uses undefined extension {ext}")


# ------------------------------------------------------------- k8s-config

def check_k8s_config(out):
    cfg = yaml.safe_load((PROM / "prometheus-k8s.yml").read_text())
    found = False
    for job in cfg.get("scrape_configs", []):
        sds = job.pop("kubernetes_sd_configs", None)
        if sds is None:
            continue
        found = True
        for sd in sds:
            if sd.get("role") != "pod":
                fail(f"prometheus-k8s.yml: job {job['job_name']}: role must be pod")
            if (sd.get("namespaces") or {}).get("names") != [APP_NS]:
                fail(f"prometheus-k8s.yml: job {job['job_name']}: must discover namespace {APP_NS} only")
        relabel = job.get("relabel_configs", [])
        if not any(r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"]
                   and r.get("regex") == "metrics" and r.get("action") == "keep" for r in relabel):
            fail(f"prometheus-k8s.yml: job {job['job_name']}: must keep only ports named metrics")
        if not any(r.get("source_labels") == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
                   and r.get("target_label") == "job" for r in relabel):
            fail(f"prometheus-k8s.yml: job {job['job_name']}: job must come from app.kubernetes.io/name")
        job["static_configs"] = [{"targets": ["kubernetes-sd-placeholder:9090"]}]
    if not found:
        fail("prometheus-k8s.yml: no kubernetes_sd_configs")
    cfg["rule_files"] = [str(PROM / r) for r in cfg.get("rule_files", [])]
    Path(out).write_text(yaml.safe_dump(cfg))


# -------------------------------------------------------------- manifests

def check_pod(where, spec):
    psc = spec.get("securityContext") or {}
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        name = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
            fail(f"{name}: runAsNonRoot is not true")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            fail(f"{name}: no RuntimeDefault seccomp profile")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            fail(f"{name}: capabilities do not drop ALL")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{name}: root filesystem is not read-only")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    fail(f"{name}: no {kind}.{r}")
        image = c.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            fail(f"{name}: image {image!r} has no pinned tag")


def check_manifests(path, with_app):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in by_kind.get("ConfigMap", [])}
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    mine = [w for w in workloads if w["metadata"].get("namespace") == OBS_NS]
    names = {w["metadata"]["name"] for w in mine}
    for want in ("otel-collector", "jaeger", "prometheus"):
        if want not in names:
            fail(f"no Deployment {want} in namespace {OBS_NS}")
    for w in mine:
        where = f"{w['kind']} {w['metadata']['name']}"
        spec = w["spec"]["template"]["spec"]
        check_pod(where, spec)
        for vol in spec.get("volumes", []):
            refs = [vol["configMap"]] if "configMap" in vol else [
                s["configMap"] for s in (vol.get("projected") or {}).get("sources", []) if "configMap" in s]
            for ref in refs:
                if (OBS_NS, ref["name"]) not in configmaps:
                    fail(f"{where}: volume {vol['name']} mounts a ConfigMap {ref['name']} that is not rendered")
    prom = next((w for w in mine if w["metadata"]["name"] == "prometheus"), None)
    if prom:
        labels = prom["spec"]["template"]["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/name") != "prometheus":
            fail("Prometheus pods must carry app.kubernetes.io/name=prometheus (namespace anatomy's NetworkPolicies)")
        cms = {name: cm for (ns, name), cm in configmaps.items() if ns == OBS_NS}
        config = next((cm for n, cm in cms.items() if n.startswith("prometheus-config")), None)
        rules = next((cm for n, cm in cms.items() if n.startswith("prometheus-rules")), None)
        if not config or config["data"].get("prometheus.yml") != (PROM / "prometheus-k8s.yml").read_text():
            fail("ConfigMap prometheus-config does not hold prometheus-k8s.yml as prometheus.yml")
        want = {p.name for p in (PROM / "rules").glob("*.yml")}
        if not rules or set(rules["data"]) != want:
            fail(f"ConfigMap prometheus-rules must hold exactly rules/*.yml ({', '.join(sorted(want))}):"
                 " list new rule files in deploy/observability/kustomization.yaml")
        items = set()
        for vol in prom["spec"]["template"]["spec"].get("volumes", []):
            for src in (vol.get("projected") or {}).get("sources", []):
                if src.get("configMap", {}).get("name", "").startswith("prometheus-rules"):
                    items |= {i["key"] for i in src["configMap"].get("items", [])}
        if items != want:
            fail("the Prometheus Deployment must project every rule file under rules/"
                 " (k8s/overlays/observability/stack/prometheus.yaml)")
    collector = next((cm for (ns, n), cm in configmaps.items() if ns == OBS_NS and n.startswith("otel-collector-config")), None)
    if not collector or collector["data"].get("config.yaml") != (HERE / "otel-collector.yaml").read_text():
        fail("ConfigMap otel-collector-config does not hold otel-collector.yaml as config.yaml")
    services = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in by_kind.get("Service", [])}
    for name, port in (("otel-collector", 4317), ("jaeger", 4317), ("jaeger", 16686), ("prometheus", 9090)):
        svc = services.get((OBS_NS, name))
        if not svc or port not in [p["port"] for p in svc["spec"]["ports"]]:
            fail(f"no Service {name} with port {port} in namespace {OBS_NS}")
    ns = [d for d in by_kind.get("Namespace", []) if d["metadata"]["name"] == OBS_NS]
    if not ns:
        fail(f"no Namespace {OBS_NS}")
    if not with_app:
        return
    pols = [d for d in by_kind.get("NetworkPolicy", []) if d["metadata"].get("namespace") == APP_NS]
    if not any("kubernetes.io/metadata.name" in str(p["spec"]) and OBS_NS in str(p["spec"]) for p in pols):
        fail(f"no NetworkPolicy in namespace {APP_NS} admitting Prometheus from {OBS_NS}")
    if not any(d["metadata"].get("namespace") == APP_NS for d in by_kind.get("RoleBinding", [])):
        fail(f"no RoleBinding in namespace {APP_NS} for Prometheus' pod discovery")
    app = [w for w in workloads if w["metadata"].get("namespace") != OBS_NS]
    if not app:
        fail("no application Deployment or StatefulSet rendered")
    for w in app:
        env = {e["name"]: e for e in w["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("value") != OTLP_ENDPOINT:
            fail(f"{w['kind']} {w['metadata']['name']}: no OTEL_EXPORTER_OTLP_ENDPOINT={OTLP_ENDPOINT}")


def main(argv):
    cmds = {
        "queries": check_queries,
        "dashboard": check_dashboard,
        "runbooks": check_runbooks,
        "collector": check_collector,
        "dashboard-rules": lambda: write_dashboard_rules(argv[2]),
        "k8s-config": lambda: check_k8s_config(argv[2]),
        "manifests": lambda: check_manifests(argv[2], "--app" in argv[3:]),
    }
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        cmds[argv[1]]()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, yaml.YAMLError) as e:
        fail(f"{type(e).__name__}: {e}")
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
