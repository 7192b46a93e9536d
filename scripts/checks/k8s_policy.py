#!/usr/bin/env python3
"""Our own rules over rendered Kubernetes manifests (scripts/checks/k8s.sh).

usage: k8s_policy.py [--images-script scripts/images.sh] RENDERED.yaml...

Each file is one `kubectl kustomize` output; the rules cover what it puts in
namespace anatomy (and that Namespace). A file whose name starts with
`overlays-kind` must also use the locally built `:dev` images. Prints one
FAIL line per broken rule and exits 1 if there is any.
"""
import argparse
import base64
import re
import sys
import tomllib
from pathlib import Path

import yaml

SERVICES = ("gateway", "business", "storage")
UID = 65532
MONITORING = "monitoring"
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
# Who may open which port of whom: {component: {(peer, port)}}. A peer is a
# component, "any" (a rule without `from`) or MONITORING.
EDGES = {
    "gateway": {("any", 50051), ("any", 8080), (MONITORING, 9090)},
    "business": {("gateway", 50061), (MONITORING, 9090)},
    "storage": {("business", 50071), ("storage", 50071), (MONITORING, 9090)},
}
SECRETISH = re.compile(r"secret|password|passwd|token|api[-_]?keys?|credential|private[-_]?key", re.I)

failures = []


def fail(where, msg):
    failures.append(f"FAIL {where}: {msg}")


def image_names(script):
    """The images scripts/images.sh builds: anatomy-<svc> for the services
    named on its line that lists all three. Without the script (or such a
    line), the three services above."""
    path = Path(script)
    if path.is_file():
        for line in path.read_text().splitlines():
            words = re.findall(r"[a-z]+", line.split("#")[0])
            if all(s in words for s in SERVICES):
                return {f"anatomy-{s}" for s in SERVICES if s in words}
    return {f"anatomy-{s}" for s in SERVICES}  # hard-coded fallback


def duration_s(text):
    """'10s', '500ms', '1m' → seconds (the services' duration syntax)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text).strip())
    if not m:
        return None
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]


def matches(selector, labels):
    sel = (selector or {}).get("matchLabels") or {}
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def env_of(container):
    return {e["name"]: e for e in container.get("env") or []}


def check_container(where, c, pod, svc, kind_overlay, allowed_images):
    w = f"{where} container {c['name']}"
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
    eff = {**psc, **csc}  # the container's settings win over the pod's
    for key, want in (("runAsNonRoot", True), ("runAsUser", UID), ("runAsGroup", UID),
                      ("allowPrivilegeEscalation", False), ("readOnlyRootFilesystem", True)):
        if eff.get(key) != want:
            fail(w, f"securityContext.{key} must be {want!r} (is {eff.get(key)!r})")
    if (eff.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(w, "seccompProfile.type must be RuntimeDefault")
    caps = eff.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
        fail(w, "capabilities must drop ALL and add none")
    if eff.get("privileged"):
        fail(w, "must not be privileged")

    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = c.get(probe)
        if not p or "grpc" not in p:
            fail(w, f"{probe} must be a native grpc probe")
        elif p["grpc"].get("port") not in ports.values():
            fail(w, f"{probe} port {p['grpc'].get('port')} is not a container port")
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(part) or {}):
                fail(w, f"resources.{part}.{r} missing")

    image = c.get("image", "")
    repo = image.split("@")[0]
    tag = repo.rsplit(":", 1)[1] if ":" in repo.rsplit("/", 1)[-1] else None
    base = repo.rsplit("/", 1)[-1].split(":")[0]
    if base not in allowed_images:
        fail(w, f"image {image!r} is none of {sorted(allowed_images)}")
    elif base != f"anatomy-{svc}":
        fail(w, f"image {image!r} is not anatomy-{svc}")
    if kind_overlay and (tag != "dev" or c.get("imagePullPolicy") != "IfNotPresent"):
        fail(w, "kind overlay: image must be :dev with imagePullPolicy IfNotPresent")
    # Scratch images have no shell: nothing may exec one.
    execs = [c.get("command") or [], c.get("args") or []]
    execs += [(c.get(p) or {}).get("exec", {}).get("command", []) for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    execs += [((c.get("lifecycle") or {}).get(h) or {}).get("exec", {}).get("command", []) for h in ("preStop", "postStart")]
    if any(re.search(r"(^|/)(ba|da|z)?sh$", str(t)) for cmd in execs for t in cmd):
        fail(w, "runs a shell, but the images are scratch")

    env = env_of(c)
    for name, e in env.items():
        if SECRETISH.search(name) and "value" in e:
            fail(w, f"env {name} looks secret but has a literal value (use secretKeyRef)")
    if svc == "gateway":
        ref = ((env.get("ANATOMY_API_KEYS") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if (ref.get("name"), ref.get("key")) != ("anatomy-api-keys", "api-keys"):
            fail(w, "ANATOMY_API_KEYS must come from secret anatomy-api-keys, key api-keys")
    if ports.get("metrics") != 9090 or not str((env.get("ANATOMY_METRICS_LISTEN") or {}).get("value", "")).endswith(":9090"):
        fail(w, "needs port 'metrics' 9090 and ANATOMY_METRICS_LISTEN=…:9090")
    listen = (env.get("ANATOMY_LISTEN") or {}).get("value")
    if listen and int(listen.rsplit(":", 1)[1]) != ports.get("grpc"):
        fail(w, f"ANATOMY_LISTEN {listen} is not the grpc container port")

    # Termination: preStop sleep, then SIGTERM → drain for the shutdown grace.
    sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
    grace = duration_s((env.get("ANATOMY_SHUTDOWN_GRACE") or {}).get("value"))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if sleep is None:
        fail(w, "needs lifecycle.preStop.sleep (native sleep action)")
    if grace is None:
        fail(w, "needs ANATOMY_SHUTDOWN_GRACE set explicitly")
    if sleep is not None and grace is not None and sleep + grace >= tgps:
        fail(w, f"preStop {sleep}s + drain {grace:g}s does not fit in terminationGracePeriodSeconds {tgps}")


def identities_of(o, svc):
    """The identities a workload's pods may be: gateway, business, or the
    replicas storage-sN-r1..3 of the StatefulSet storage-sN."""
    if svc != "storage":
        return [svc]
    m = re.fullmatch(r"storage-s(\d+)", o["metadata"]["name"])
    return [f"storage-s{m[1]}-r{r}" for r in (1, 2, 3)] if m else []


def check_identity(where, o, c, pod, svc):
    """Mutual TLS: certificates from one Secret per identity, mounted as a
    directory (no subPath: rotations must reach the files), the development
    default off, and probes on the plaintext health port."""
    w = f"{where} container {c['name']}"
    env = {k: str(e.get("value")) for k, e in env_of(c).items()}
    if env.get("ANATOMY_TLS_DIR") != "/tls" or env.get("ANATOMY_TLS_DEV_CERTS") != "false":
        fail(w, "needs ANATOMY_TLS_DIR=/tls and ANATOMY_TLS_DEV_CERTS=false")
    if env.get("ANATOMY_INSECURE_PLAINTEXT", "false") not in ("false", "0"):
        fail(w, "must not turn mutual TLS off (ANATOMY_INSECURE_PLAINTEXT)")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    health = ports.get("health")
    if health is None or not env.get("ANATOMY_HEALTH_LISTEN", "").endswith(f":{health}"):
        fail(w, "needs port 'health' and ANATOMY_HEALTH_LISTEN on it (probes cannot present a client certificate)")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = ((c.get(probe) or {}).get("grpc") or {}).get("port")
        if health is not None and port != health:
            fail(w, f"{probe} must use the health port {health} (the gRPC port requires a client certificate)")
    mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath") == "/tls"]
    if len(mounts) != 1 or not mounts[0].get("readOnly") or mounts[0].get("subPath"):
        fail(w, "needs one read-only volumeMount at /tls without subPath")
        return
    vols = [v for v in pod.get("volumes") or [] if v["name"] == mounts[0]["name"]]
    sources = ((vols[0].get("projected") or {}).get("sources") or []) if vols else []
    got = {}
    for src in sources:
        sec = src.get("secret") or {}
        got[sec.get("name")] = {i["key"]: i["path"] for i in sec.get("items") or []}
    want = identities_of(o, svc)
    if sorted(got) != sorted(f"{i}-tls" for i in want):
        fail(where, f"volume {mounts[0]['name']} must project Secrets {[f'{i}-tls' for i in want]} (has {sorted(got)})")
        return
    cas = 0
    for ident in want:
        items = got[f"{ident}-tls"]
        if items.get("tls.crt") != f"{ident}.pem" or items.get("tls.key") != f"{ident}.key":
            fail(where, f"Secret {ident}-tls must map tls.crt/tls.key to {ident}.pem/{ident}.key")
        cas += items.get("ca.crt") == "ca.pem"
    if cas != 1:
        fail(where, "exactly one Secret must provide ca.crt as ca.pem")


# cert-manager.io/v1 fields this check knows (kubernetes-validate has no
# schemas for CRDs, so their shape is checked here, strictly).
CERT_FIELDS = {"secretName", "commonName", "subject", "uris", "dnsNames", "ipAddresses",
               "emailAddresses", "usages", "duration", "renewBefore", "isCA", "privateKey",
               "issuerRef", "secretTemplate", "revisionHistoryLimit"}
CERT_USAGES = {"signing", "digital signature", "content commitment", "key encipherment",
               "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
               "decipher only", "any", "server auth", "client auth", "code signing",
               "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
               "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"}
KEY_FIELDS = {"algorithm": {"RSA", "ECDSA", "Ed25519"}, "encoding": {"PKCS1", "PKCS8"},
              "rotationPolicy": {"Never", "Always"}, "size": None}
ISSUER_KINDS = {"selfSigned", "ca", "acme", "vault", "venafi"}


def check_cert_manager_shapes(where, objs):
    for o in objs:
        if o.get("apiVersion") != "cert-manager.io/v1":
            continue
        w = f"{where} {o['kind']}/{o['metadata'].get('name')}"
        spec = o.get("spec") or {}
        if o["kind"] == "Certificate":
            for k in set(spec) - CERT_FIELDS:
                fail(w, f"unknown field spec.{k}")
            for k in ("secretName", "issuerRef"):
                if k not in spec:
                    fail(w, f"spec.{k} is required")
            for u in set(spec.get("usages") or []) - CERT_USAGES:
                fail(w, f"unknown usage {u!r}")
            for k, v in (spec.get("privateKey") or {}).items():
                if k not in KEY_FIELDS or (KEY_FIELDS[k] and v not in KEY_FIELDS[k]):
                    fail(w, f"privateKey.{k}: {v!r} is not valid")
            for k in ("duration", "renewBefore"):
                if k in spec and not re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms))+", str(spec[k])):
                    fail(w, f"spec.{k} {spec[k]!r} is not a Go duration")
            if set(spec.get("issuerRef") or {}) - {"name", "kind", "group"}:
                fail(w, "issuerRef takes name, kind, group")
        elif o["kind"] in ("Issuer", "ClusterIssuer"):
            if len(set(spec) & ISSUER_KINDS) != 1 or set(spec) - ISSUER_KINDS:
                fail(w, f"spec must be exactly one of {sorted(ISSUER_KINDS)}")
        else:
            fail(w, f"unexpected cert-manager kind {o['kind']}")


def check_certificates(where, objs):
    """cert-manager: each Secret a workload mounts is issued by a
    Certificate naming that identity, good for both ends, from an Issuer here."""
    check_cert_manager_shapes(where, objs)
    certs = {o["spec"].get("secretName"): o for o in objs if o["kind"] == "Certificate"}
    issuers = {o["metadata"]["name"] for o in objs if o["kind"] in ("Issuer", "ClusterIssuer")}
    for o in (o for o in objs if o["kind"] in ("Deployment", "StatefulSet")):
        svc = (o["spec"]["template"]["metadata"].get("labels") or {}).get("app.kubernetes.io/name")
        for ident in identities_of(o, svc):
            cert = certs.get(f"{ident}-tls")
            if cert is None:
                fail(where, f"no Certificate writes Secret {ident}-tls")
                continue
            spec = cert["spec"]
            uri = "spiffe://anatomy.local/" + (ident.replace("-s", "/s", 1).replace("-r", "/r", 1)
                                                 if ident.startswith("storage-") else ident)
            if spec.get("uris") != [uri]:
                fail(where, f"Certificate {cert['metadata']['name']} must name exactly {uri}")
            if not {"server auth", "client auth"} <= set(spec.get("usages") or []):
                fail(where, f"Certificate {cert['metadata']['name']} needs usages server auth and client auth")
            if (spec.get("issuerRef") or {}).get("name") not in issuers:
                fail(where, f"Certificate {cert['metadata']['name']} names an issuer that is not here")


def check_workload(where, o, objs, kind_overlay, allowed_images):
    meta_labels = o["metadata"].get("labels") or {}
    tmpl = o["spec"]["template"]
    labels = tmpl["metadata"].get("labels") or {}
    pod = tmpl["spec"]
    svc = labels.get("app.kubernetes.io/name")
    for lb in (meta_labels, labels):
        if svc not in SERVICES or lb.get("app.kubernetes.io/part-of") != "anatomy" \
                or not lb.get("app.kubernetes.io/component") or lb.get("app.kubernetes.io/name") != svc:
            fail(where, "needs labels app.kubernetes.io/name (a service), part-of: anatomy, component")
            return
    if not matches(o["spec"].get("selector"), labels):
        fail(where, "selector does not select its own pods")
    if pod.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false")
    ann = tmpl["metadata"].get("annotations") or {}
    if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "9090":
        fail(where, "pod needs prometheus.io/scrape 'true' and prometheus.io/port '9090'")
    if o["kind"] == "StatefulSet" and (pod.get("securityContext") or {}).get("fsGroup") != UID:
        fail(where, f"fsGroup must be {UID} so the data volume is writable")
    for c in pod.get("initContainers", []) + pod["containers"]:
        check_container(where, c, pod, svc, kind_overlay, allowed_images)
    for c in pod["containers"]:
        check_identity(where, o, c, pod, svc)

    spreads = pod.get("topologySpreadConstraints") or []
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + \
        [t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    if not any(matches(s.get("labelSelector"), labels) for s in spreads + terms):
        fail(where, "needs topologySpreadConstraints or pod anti-affinity over its own pods")

    # Exactly one PDB covers these pods, and it covers no other workload's.
    pdbs = [p for p in objs if p["kind"] == "PodDisruptionBudget" and matches(p["spec"].get("selector"), labels)]
    if len(pdbs) != 1:
        fail(where, f"needs exactly one PodDisruptionBudget selecting it (found {len(pdbs)})")
    else:
        pdb = pdbs[0]
        others = [w for w in objs if w is not o and w["kind"] in ("Deployment", "StatefulSet")
                  and matches(pdb["spec"].get("selector"), w["spec"]["template"]["metadata"].get("labels") or {})]
        if others:
            fail(where, f"PDB {pdb['metadata']['name']} also selects {others[0]['metadata']['name']}")
        if o["kind"] == "StatefulSet" and pdb["spec"].get("maxUnavailable") != 1:
            fail(where, "storage PDB must say maxUnavailable: 1 (a Raft group of 3 survives one loss)")
    if o["kind"] == "Deployment":
        hpas = [h for h in objs if h["kind"] == "HorizontalPodAutoscaler"
                and h["spec"]["scaleTargetRef"].get("name") == o["metadata"]["name"]]
        if len(hpas) != 1 or hpas[0]["apiVersion"] != "autoscaling/v2" or hpas[0]["spec"].get("minReplicas", 1) < 2:
            fail(where, "needs one autoscaling/v2 HPA with minReplicas >= 2")
    if o["kind"] == "StatefulSet":
        spec = o["spec"]
        svcs = [s for s in objs if s["kind"] == "Service" and s["metadata"]["name"] == spec.get("serviceName")]
        if spec.get("podManagementPolicy") != "Parallel":
            fail(where, "podManagementPolicy must be Parallel (a Raft group needs its majority up to elect)")
        if not svcs or svcs[0]["spec"].get("clusterIP") != "None" or not svcs[0]["spec"].get("publishNotReadyAddresses"):
            fail(where, "serviceName must be a headless Service with publishNotReadyAddresses: true")
    return svc


def selects(selector, labels):
    """Label-selector semantics: an empty selector selects everything."""
    selector = selector or {}
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for e in selector.get("matchExpressions") or []:
        has, val, vals = e["key"] in labels, labels.get(e["key"]), e.get("values") or []
        ok &= {"In": has and val in vals, "NotIn": not has or val not in vals,
               "Exists": has, "DoesNotExist": not has}[e["operator"]]
    return ok


def peers_of(rule):
    """What a NetworkPolicy ingress rule lets in, as peer names."""
    if not rule.get("from"):
        return {"any"}
    out = set()
    for p in rule["from"]:
        ns = (p.get("namespaceSelector") or {}).get("matchLabels") or {}
        pod = (p.get("podSelector") or {}).get("matchLabels") or {}
        exprs = (p.get("namespaceSelector") or {}).get("matchExpressions") or \
            (p.get("podSelector") or {}).get("matchExpressions")
        if exprs or "ipBlock" in p:
            out.add(f"unrecognised peer {p}")
        elif ns == {"kubernetes.io/metadata.name": "anatomy-observability"} and pod in ({}, PROMETHEUS):
            out.add(MONITORING)  # the monitoring namespace (or its prometheus only)
        elif "namespaceSelector" in p and not ns and pod == PROMETHEUS:
            out.add(MONITORING)  # a prometheus pod in any namespace
        elif "namespaceSelector" not in p and list(pod) == ["app.kubernetes.io/name"]:
            out.add(pod["app.kubernetes.io/name"])  # a component of this namespace
        else:
            out.add(f"unrecognised peer {p}")
    return out


def check_network(where, objs, pods):
    """pods: {component: [(pod labels, {port name: number})]}, one per workload."""
    pols = [o for o in objs if o["kind"] == "NetworkPolicy"]
    if any(o["kind"] == "Namespace" for o in objs):
        if not any(p["spec"].get("podSelector") in ({}, None) and "Ingress" in p["spec"].get("policyTypes", [])
                   and not p["spec"].get("ingress") for p in pols):
            fail(where, "no default-deny ingress NetworkPolicy for the namespace")
    for comp, workloads in pods.items():
        for labels, ports in workloads:
            got = set()
            selecting = [p for p in pols if selects(p["spec"].get("podSelector"), labels)]
            if not any(p["spec"].get("ingress") for p in selecting):
                fail(where, f"no NetworkPolicy admits anything to {comp}")
            for p in selecting:
                for rule in p["spec"].get("ingress") or []:
                    if not rule.get("ports"):
                        fail(where, f"{p['metadata']['name']}: an ingress rule without ports opens every port")
                    for peer in peers_of(rule):
                        got |= {(peer, ports.get(port["port"], port["port"])) for port in rule.get("ports") or []}
            if got != EDGES[comp]:
                fail(where, f"{comp} ingress allows {sorted(got - EDGES[comp], key=str)} "
                            f"and lacks {sorted(EDGES[comp] - got, key=str)}")
                break


def check_configmaps(where, objs):
    secret_values = set()
    for s in (o for o in objs if o["kind"] == "Secret"):
        secret_values |= {base64.b64decode(v).decode(errors="replace") for v in (s.get("data") or {}).values()}
        secret_values |= set((s.get("stringData") or {}).values())
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            if SECRETISH.search(k) or re.search(r"dev-key-|BEGIN [A-Z ]*PRIVATE KEY", v) \
                    or any(s and s in v for s in secret_values):
                fail(where, f"ConfigMap {cm['metadata']['name']} key {k} looks like it holds a secret")


def check_shard_map(where, objs):
    """The shard map covers every slot once and names exactly the pods of
    the storage StatefulSets, by their stable DNS names."""
    cms = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "shard-map"]
    if not cms:
        fail(where, "no ConfigMap shard-map")
        return
    m = tomllib.loads(cms[0]["data"]["shard-map.toml"])
    if [sh["id"] for sh in m["shards"]] != list(range(len(m["shards"]))):
        fail(where, "shard map: shard ids must be 0, 1, 2, ... in order")
    want, nxt = set(), 0
    for sh in m["shards"]:  # in file order, as storage reads it
        # A range may be empty (slot_end = slot_start): a shard added to a
        # running cluster (k8s/components/shard-3) starts owning nothing.
        if sh["slot_start"] != nxt or sh["slot_end"] < sh["slot_start"]:
            fail(where, f"shard map: shard {sh['id']} has slots [{sh['slot_start']}, {sh['slot_end']}), must start at {nxt}")
        nxt = sh["slot_end"]
        if sorted(r["id"] for r in sh["replicas"]) != list(range(1, len(sh["replicas"]) + 1)):
            fail(where, f"shard map: shard {sh['id']} replica ids must be 1..n")
    if nxt != m.get("slots", 1024):
        fail(where, f"shard map: slots end at {nxt}, not {m.get('slots', 1024)}")
    for sts in (o for o in objs if o["kind"] == "StatefulSet"
                and o["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "storage"):
        s, ns = sts["spec"], sts["metadata"].get("namespace")
        port = next(p["containerPort"] for p in s["template"]["spec"]["containers"][0]["ports"] if p["name"] == "grpc")
        want |= {f"{sts['metadata']['name']}-{i}.{s['serviceName']}.{ns}.svc.cluster.local:{port}"
                 for i in range(s["replicas"])}
    have = {r["addr"] for sh in m["shards"] for r in sh["replicas"]}
    if have != want:
        fail(where, f"shard map addresses {sorted(have ^ want)} do not match the StatefulSets' pods")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images-script", default="scripts/images.sh")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    allowed = image_names(a.images_script)
    for f in a.files:
        where = Path(f).stem
        # Our scope is namespace anatomy; an overlay may add other things
        # (a monitoring stack in its own namespace) that these rules are not about.
        objs = [o for o in yaml.safe_load_all(Path(f).read_text()) if o
                and (o["metadata"].get("namespace") == "anatomy"
                     or (o["kind"] == "Namespace" and o["metadata"].get("name") == "anatomy"))]
        for o in objs:
            meta = o["metadata"]
            # anatomy, or what an overlay adds for it (anatomy-observability)
            if not (meta.get("labels") or {}).get("app.kubernetes.io/part-of"):
                fail(where, f"{o['kind']}/{meta.get('name')} lacks label app.kubernetes.io/part-of")
        pods = {}
        for o in (o for o in objs if o["kind"] in ("Deployment", "StatefulSet")):
            svc = check_workload(f"{where} {o['kind']}/{o['metadata']['name']}", o, objs,
                                 where.startswith("overlays-kind"), allowed)
            if svc:
                tmpl = o["spec"]["template"]
                ports = {p["name"]: p["containerPort"] for c in tmpl["spec"]["containers"]
                         for p in c.get("ports") or [] if p.get("name")}
                pods.setdefault(svc, []).append((tmpl["metadata"]["labels"], ports))
        components = set(pods)
        check_network(where, objs, pods)
        check_configmaps(where, objs)
        if any(o["kind"] == "Certificate" for o in objs):
            check_certificates(where, objs)
        if "storage" in components:
            check_shard_map(where, objs)
        if where in ("base", "overlays-kind", "overlays-kind-four-shards") and components != set(SERVICES):
            fail(where, f"a full render must have all of {SERVICES} (has {sorted(components)})")
    for line in failures:
        print(line)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
