#!/usr/bin/env python3
"""Invariants of the rendered clawgate Helm chart.

Usage:
  check_chart.py RENDERED.yaml [--values VALUES.yaml ...]
      Check one rendered release (all manifests in one multi-document file).
      The secrets set in each values file (secrets.*, database and Redis URLs,
      in-chart PostgreSQL password) must not appear in any ConfigMap, besides
      every value of every rendered Secret. Prints one line per check and, last,
      "N passed, M failed"; exits 1 when any check failed.
  check_chart.py --self-test GOOD.yaml TESTDATA_DIR
      Proves the checks can fail: every deliberately broken manifest in
      TESTDATA_DIR (each names the checks it must fail in a
      "# expect-fail: id, id" header) and a set of mutations of GOOD.yaml must
      fail exactly where expected, and GOOD.yaml itself must pass.

Checks (ids):
  probes             every long-running container has liveness and readiness probes
  probe-kinds        the edge probes over HTTP, every other clawgate service over gRPC
  resources          every container has cpu+memory requests and limits
  security-context   every container runs non-root, read-only root filesystem, no
                     privilege escalation, drops ALL capabilities, seccomp RuntimeDefault
  runner-hpa         the runner Deployment has its own HPA (autoscaling/v2), which
                     targets only it, and the Deployment leaves replicas to the HPA
  hpa-targets        every HPA targets a Deployment of this release and none is shared
  runner-headless    the runner Service is headless and the edge's runner URL names it
  secrets-in-configmaps  no Secret value (gateway token, model API key, signing and
                     encryption keys, database/Redis URLs) appears in a ConfigMap,
                     and no ConfigMap key looks like a secret
  secret-env         secret environment variables come from secretKeyRef, never a literal
  pdb                every clawgate Deployment is covered by a PodDisruptionBudget
  topology-spread    every clawgate Deployment has topologySpreadConstraints
  grace-period       terminationGracePeriodSeconds exceeds the preStop sleep
"""

from __future__ import annotations

import base64
import copy
import re
import sys
from pathlib import Path

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
COMPONENT = "app.kubernetes.io/component"
SECRET_ENV = re.compile(r"(TOKEN|API_KEY|SIGNING|ENCRYPTION|PASSWORD|SECRET|DATABASE_URL|REDIS_URL)")
SECRET_CONFIG_KEY = re.compile(r"(?i)(token|api[_-]?key|signing|encryption|password|secret|database[_-]?url|redis[_-]?url)")
MIN_SECRET_LEN = 8


def load(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict) and d.get("kind")]


def secrets_of_values(path: str) -> list[str]:
    """The secret values a values file sets (empty ones are generated, not set)."""
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    secrets = values.get("secrets") or {}
    found = [secrets.get(k) for k in ("gatewayToken", "modelApiKey", "signingKey", "encryptionKey")]
    found.append((values.get("externalDatabase") or {}).get("url"))
    found.append((values.get("externalDatabase") or {}).get("migrationUrl"))
    found.append(((values.get("postgresql") or {}).get("auth") or {}).get("appPassword"))
    found.append((values.get("externalRedis") or {}).get("url"))
    found.append(((values.get("postgresql") or {}).get("auth") or {}).get("password"))
    return [str(v) for v in found if v]


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind not in WORKLOADS:
        return None
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj) or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def name(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def component(obj: dict) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(COMPONENT)


def is_clawgate(obj: dict, c: dict) -> bool:
    return "clawgate" in str(c.get("image", "")).rsplit("/", 1)[-1].split(":")[0].split("@")[0]


class Checker:
    def __init__(self, docs: list[dict], forbidden: list[str]):
        self.docs = docs
        self.forbidden = [v for v in forbidden if v]
        self.results: dict[str, list[str]] = {}

    def of(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def record(self, check: str, problems: list[str]) -> None:
        self.results.setdefault(check, []).extend(problems)

    # -- checks -----------------------------------------------------------------

    def probes(self) -> None:
        problems = []
        for obj in self.docs:
            if obj.get("kind") not in LONG_RUNNING:
                continue
            for c in (pod_spec(obj) or {}).get("containers") or []:
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        problems.append(f"{name(obj)} container {c.get('name')}: no {probe}")
        self.record("probes", problems)

    def probe_kinds(self) -> None:
        problems = []
        for obj in self.of("Deployment"):
            for c in (pod_spec(obj) or {}).get("containers") or []:
                if not is_clawgate(obj, c):
                    continue
                want = "httpGet" if component(obj) == "edge" else "grpc"
                for probe in ("livenessProbe", "readinessProbe"):
                    if want not in (c.get(probe) or {}):
                        problems.append(f"{name(obj)} {probe}: expected a {want} probe")
        self.record("probe-kinds", problems)

    def resources(self) -> None:
        problems = []
        for obj in self.docs:
            for c in containers(obj):
                res = c.get("resources") or {}
                for section in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if not (res.get(section) or {}).get(r):
                            problems.append(f"{name(obj)} container {c.get('name')}: no {section}.{r}")
        self.record("resources", problems)

    def security_context(self) -> None:
        problems = []
        for obj in self.docs:
            spec = pod_spec(obj)
            if spec is None:
                continue
            pod = spec.get("securityContext") or {}
            for c in containers(obj):
                sc = c.get("securityContext") or {}
                where = f"{name(obj)} container {c.get('name')}"
                run_as_non_root = sc.get("runAsNonRoot", pod.get("runAsNonRoot"))
                run_as_user = sc.get("runAsUser", pod.get("runAsUser"))
                seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
                if run_as_non_root is not True:
                    problems.append(f"{where}: runAsNonRoot is not true")
                if run_as_user == 0:
                    problems.append(f"{where}: runAsUser is 0")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{where}: readOnlyRootFilesystem is not true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: allowPrivilegeEscalation is not false")
                if sc.get("privileged") is True:
                    problems.append(f"{where}: privileged")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{where}: capabilities do not drop ALL")
                if (sc.get("capabilities") or {}).get("add"):
                    problems.append(f"{where}: adds capabilities")
                if seccomp != "RuntimeDefault":
                    problems.append(f"{where}: seccompProfile is not RuntimeDefault")
        self.record("security-context", problems)

    def hpa_targets(self) -> dict[str, list[dict]]:
        problems = []
        deployments = {d["metadata"]["name"] for d in self.of("Deployment")}
        by_target: dict[str, list[dict]] = {}
        for hpa in self.of("HorizontalPodAutoscaler"):
            if hpa.get("apiVersion") != "autoscaling/v2":
                problems.append(f"{name(hpa)}: apiVersion {hpa.get('apiVersion')}, expected autoscaling/v2")
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") != "Deployment" or ref.get("name") not in deployments:
                problems.append(f"{name(hpa)}: targets {ref.get('kind')}/{ref.get('name')}, not a Deployment of this release")
            by_target.setdefault(str(ref.get("name")), []).append(hpa)
        for target, hpas in by_target.items():
            if len(hpas) > 1:
                problems.append(f"Deployment/{target} has {len(hpas)} HPAs: {', '.join(name(h) for h in hpas)}")
        for d in self.of("Deployment"):
            if d["metadata"]["name"] in by_target and "replicas" in (d.get("spec") or {}):
                problems.append(f"{name(d)}: sets spec.replicas although an HPA scales it")
        self.record("hpa-targets", problems)
        return by_target

    def runner_hpa(self, by_target: dict[str, list[dict]]) -> None:
        problems = []
        runners = [d for d in self.of("Deployment") if component(d) == "runner"]
        if not runners:
            problems.append("no runner Deployment rendered")
        for runner in runners:
            hpas = by_target.get(runner["metadata"]["name"], [])
            if len(hpas) != 1:
                problems.append(f"{name(runner)}: has {len(hpas)} HPAs, expected its own one")
                continue
            hpa = hpas[0]
            if component(hpa) != "runner":
                problems.append(f"{name(hpa)}: runner HPA is not labelled component=runner")
            spec = hpa.get("spec") or {}
            if not spec.get("metrics"):
                problems.append(f"{name(hpa)}: no metrics")
            if int(spec.get("minReplicas") or 1) > int(spec.get("maxReplicas") or 0):
                problems.append(f"{name(hpa)}: minReplicas > maxReplicas")
        self.record("runner-hpa", problems)

    def runner_headless(self) -> None:
        problems = []
        services = [s for s in self.of("Service") if component(s) == "runner"]
        if len(services) != 1:
            problems.append(f"expected one runner Service, found {len(services)}")
        for svc in services:
            if (svc.get("spec") or {}).get("clusterIP") != "None":
                problems.append(f"{name(svc)}: clusterIP is {svc['spec'].get('clusterIP')!r}, expected 'None' (headless)")
            host = svc["metadata"]["name"]
            urls = [v for cm in self.of("ConfigMap") for k, v in ((cm.get("data") or {}).items())
                    if k == "CLAWGATE_RUNNER_URL"]
            if not urls:
                problems.append("no CLAWGATE_RUNNER_URL in any ConfigMap")
            for url in urls:
                # dns:// (re-resolved, balanced over every pod) or a plain URL.
                m = re.match(r"^(?:http|dns)://([^:/.]+)[.:]", str(url))
                if not m or m.group(1) != host:
                    problems.append(f"CLAWGATE_RUNNER_URL {url!r} does not name Service {host}")
        self.record("runner-headless", problems)

    def secrets_in_configmaps(self) -> None:
        problems = []
        values: list[tuple[str, str]] = [(f"values secret #{i + 1}", v) for i, v in enumerate(self.forbidden)]
        for secret in self.of("Secret"):
            for key, raw in (secret.get("data") or {}).items():
                try:
                    decoded = base64.b64decode(str(raw)).decode("utf-8", "replace")
                except ValueError:
                    decoded = ""
                values.append((f"{name(secret)}[{key}]", decoded))
                values.append((f"{name(secret)}[{key}] (base64)", str(raw)))
            for key, raw in (secret.get("stringData") or {}).items():
                values.append((f"{name(secret)}[{key}]", str(raw)))
        values = [(origin, v.strip()) for origin, v in values if len(v.strip()) >= MIN_SECRET_LEN]
        for cm in self.of("ConfigMap"):
            data = dict(cm.get("data") or {})
            data.update({k: str(v) for k, v in (cm.get("binaryData") or {}).items()})
            for key, text in data.items():
                text = str(text)
                if SECRET_CONFIG_KEY.search(key):
                    problems.append(f"{name(cm)}: key {key!r} looks like a secret")
                for origin, secret_value in values:
                    if secret_value in text:
                        problems.append(f"{name(cm)}[{key}] contains the value of {origin}")
                        continue
                    # Also catch a line of a multi-line secret (e.g. a PEM body).
                    for line in secret_value.splitlines():
                        line = line.strip()
                        if len(line) >= 16 and not line.startswith("-----") and line in text:
                            problems.append(f"{name(cm)}[{key}] contains part of {origin}")
                            break
        self.record("secrets-in-configmaps", problems)

    def secret_env(self) -> None:
        problems = []
        for obj in self.docs:
            for c in containers(obj):
                for env in c.get("env") or []:
                    if SECRET_ENV.search(str(env.get("name", ""))) and "value" in env:
                        problems.append(f"{name(obj)} container {c.get('name')}: {env['name']} is a literal, not a secretKeyRef")
        self.record("secret-env", problems)

    def pdb(self) -> None:
        problems = []
        pdbs = self.of("PodDisruptionBudget")
        for d in self.of("Deployment"):
            if not any(is_clawgate(d, c) for c in containers(d)):
                continue
            labels = (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
            covered = False
            for p in pdbs:
                match = (((p.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
                if match and all(labels.get(k) == v for k, v in match.items()):
                    covered = True
            if not covered:
                problems.append(f"{name(d)}: no PodDisruptionBudget selects its pods")
        self.record("pdb", problems)

    def topology_spread(self) -> None:
        problems = []
        for d in self.of("Deployment"):
            if any(is_clawgate(d, c) for c in containers(d)) and not (pod_spec(d) or {}).get("topologySpreadConstraints"):
                problems.append(f"{name(d)}: no topologySpreadConstraints")
        self.record("topology-spread", problems)

    def grace_period(self) -> None:
        problems = []
        for obj in self.docs:
            if obj.get("kind") not in LONG_RUNNING:
                continue
            spec = pod_spec(obj) or {}
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
            for c in spec.get("containers") or []:
                pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
                sleep = pre.get("sleep", {}).get("seconds") if "sleep" in pre else None
                if sleep is None and "exec" in pre:
                    cmd = pre["exec"].get("command") or []
                    if len(cmd) == 2 and cmd[0].endswith("sleep"):
                        sleep = int(cmd[1])
                if sleep is not None and grace <= int(sleep):
                    problems.append(f"{name(obj)}: terminationGracePeriodSeconds {grace} <= preStop sleep {sleep}")
        self.record("grace-period", problems)

    def run(self) -> dict[str, list[str]]:
        self.probes()
        self.probe_kinds()
        self.resources()
        self.security_context()
        by_target = self.hpa_targets()
        self.runner_hpa(by_target)
        self.runner_headless()
        self.secrets_in_configmaps()
        self.secret_env()
        self.pdb()
        self.topology_spread()
        self.grace_period()
        return self.results


def report(results: dict[str, list[str]], label: str = "") -> int:
    passed = failed = 0
    for check, problems in results.items():
        if problems:
            failed += 1
            print(f"FAIL {label}{check}")
            for p in problems:
                print(f"     - {p}")
        else:
            passed += 1
            print(f"ok   {label}{check}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def failing(docs: list[dict]) -> set[str]:
    return {check for check, problems in Checker(docs, []).run().items() if problems}


# -- self-test ------------------------------------------------------------------

def find(docs: list[dict], kind: str, comp: str) -> dict:
    for d in docs:
        if d.get("kind") == kind and component(d) == comp:
            return d
    raise LookupError(f"no {kind} of component {comp} in the good manifest")


def mutations(good: list[dict]):
    """(description, expected failing checks, mutated docs) for GOOD."""

    def mutate(desc, expect, fn):
        docs = copy.deepcopy(good)
        fn(docs)
        return desc, set(expect), docs

    def runner_container(docs):
        return pod_spec(find(docs, "Deployment", "runner"))["containers"][0]

    def drop_probe(docs):
        del runner_container(docs)["readinessProbe"]

    def drop_limits(docs):
        del runner_container(docs)["resources"]["limits"]

    def root(docs):
        sc = runner_container(docs)["securityContext"]
        sc["runAsNonRoot"] = False
        sc["runAsUser"] = 0

    def writable_root(docs):
        runner_container(docs)["securityContext"]["readOnlyRootFilesystem"] = False

    def drop_runner_hpa(docs):
        hpa = find(docs, "HorizontalPodAutoscaler", "runner")
        docs.remove(hpa)
        find(docs, "Deployment", "runner")["spec"]["replicas"] = 2

    def shared_hpa(docs):
        edge = find(docs, "HorizontalPodAutoscaler", "edge")
        runner = find(docs, "Deployment", "runner")["metadata"]["name"]
        edge["spec"]["scaleTargetRef"]["name"] = runner

    def cluster_ip(docs):
        find(docs, "Service", "runner")["spec"]["clusterIP"] = "10.0.0.10"

    def leak(docs):
        secret = next((d for d in docs if d.get("kind") == "Secret" and (d.get("data") or {})), None)
        if secret is None:  # all secrets external: add one, as the chart would
            secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "added"},
                      "data": {"gateway-token": base64.b64encode(b"a-generated-gateway-token").decode()}}
            docs.append(secret)
        key, raw = next(iter(secret["data"].items()))
        cm = next(d for d in docs if d.get("kind") == "ConfigMap")
        cm["data"]["CLAWGATE_NOTE"] = "copied: " + base64.b64decode(raw).decode()

    def secret_like_key(docs):
        cm = next(d for d in docs if d.get("kind") == "ConfigMap")
        cm["data"]["CLAWGATE_MODEL_API_KEY"] = "x"

    def literal_env(docs):
        env = pod_spec(find(docs, "Deployment", "auth"))["containers"][0]["env"]
        for e in env:
            if e["name"] == "CLAWGATE_GATEWAY_TOKEN":
                e.pop("valueFrom")
                e["value"] = "literal-token-value"

    def http_probe_on_grpc(docs):
        c = pod_spec(find(docs, "Deployment", "session"))["containers"][0]
        c["livenessProbe"] = {"tcpSocket": {"port": 50051}}

    def no_pdb(docs):
        docs.remove(find(docs, "PodDisruptionBudget", "session"))

    def no_spread(docs):
        pod_spec(find(docs, "Deployment", "auth")).pop("topologySpreadConstraints")

    def short_grace(docs):
        spec = pod_spec(find(docs, "Deployment", "edge"))
        spec["terminationGracePeriodSeconds"] = 3

    yield mutate("runner without readinessProbe", ["probes", "probe-kinds"], drop_probe)
    yield mutate("runner without resource limits", ["resources"], drop_limits)
    yield mutate("runner as root", ["security-context"], root)
    yield mutate("runner with writable root filesystem", ["security-context"], writable_root)
    yield mutate("runner HPA removed", ["runner-hpa"], drop_runner_hpa)
    yield mutate("edge HPA retargeted at the runner", ["hpa-targets", "runner-hpa"], shared_hpa)
    yield mutate("runner Service with a cluster IP", ["runner-headless"], cluster_ip)
    yield mutate("a Secret value copied into the ConfigMap", ["secrets-in-configmaps"], leak)
    yield mutate("a secret-named key in the ConfigMap", ["secrets-in-configmaps"], secret_like_key)
    yield mutate("gateway token as a literal env value", ["secret-env"], literal_env)
    yield mutate("session liveness over TCP", ["probe-kinds"], http_probe_on_grpc)
    yield mutate("session PDB removed", ["pdb"], no_pdb)
    yield mutate("auth without topology spread", ["topology-spread"], no_spread)
    yield mutate("edge grace shorter than preStop", ["grace-period"], short_grace)


def expected_from_header(path: Path) -> set[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#\s*expect-fail:\s*(.+)$", line)
        if m:
            return {s.strip() for s in m.group(1).split(",") if s.strip()}
    raise ValueError(f"{path}: no '# expect-fail:' header")


def self_test(good_path: str, testdata: str) -> int:
    passed = failed = 0

    def verdict(ok: bool, text: str) -> None:
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok   self-test: {text}")
        else:
            failed += 1
            print(f"FAIL self-test: {text}")

    good = load(good_path)
    got = failing(good)
    verdict(not got, f"good manifest passes every check (failing: {sorted(got) or 'none'})")
    files = sorted(Path(testdata).glob("*.yaml"))
    verdict(bool(files), f"{testdata} holds broken manifests ({len(files)})")
    for path in files:
        expect = expected_from_header(path)
        got = failing(load(path))
        verdict(expect <= got, f"{path.name} fails {sorted(expect)} (failing: {sorted(got)})")
    for desc, expect, docs in mutations(good):
        got = failing(docs)
        verdict(got == expect, f"{desc}: fails exactly {sorted(expect)} (failing: {sorted(got)})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--self-test":
        return self_test(argv[1], argv[2])
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    path, rest = argv[0], argv[1:]
    forbidden = []
    while rest:
        if rest[0] == "--values" and len(rest) > 1:
            forbidden.extend(secrets_of_values(rest[1]))
            rest = rest[2:]
        else:
            print(f"unknown argument {rest[0]!r}", file=sys.stderr)
            return 2
    print(f"checking {path}")
    return report(Checker(load(path), forbidden).run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
