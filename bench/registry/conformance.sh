#!/usr/bin/env bash
# Run the official OCI distribution-spec conformance suite against `berth registry serve`.
#
#   bench/registry/conformance.sh            # spec version 1.1 (the suite's "stable")
#   OCI_VERSION=dev bench/registry/conformance.sh   # also the 1.1+dev APIs (tag params, cancel)
#
# The suite is the Go module github.com/opencontainers/distribution-spec/conformance (its own
# go.mod, outside berth's module). It is fetched through the Go module proxy
# (CONFORMANCE_VERSION, default "latest"), copied out of the read-only module cache into a
# temporary directory and built there with `go build` (its README deprecates `go test`).
# berth is built, started on a temporary root on a free loopback port, and everything is
# removed afterwards. RESULTS_DIR=dir keeps results.yaml, junit.xml and report.html;
# BERTH=/path/to/berth uses an already built binary instead of building one.
#
# Exit status: the suite's (0 when every test passed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
conf_version=${CONFORMANCE_VERSION:-latest}
oci_version=${OCI_VERSION:-1.1}

work=$(mktemp -d /tmp/berth-conformance.XXXXXX)
server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [[ -n ${BERTH:-} ]]; then
	cp "$BERTH" "$work/berth"
else
	echo "== building berth"
	(cd "$repo" && go build -tags netgo,osusergo -o "$work/berth" ./cmd/berth)
fi

echo "== fetching the conformance suite ($conf_version)"
mod_json=$(cd "$work" && GOFLAGS=-mod=mod GOWORK=off go mod download -json \
	"github.com/opencontainers/distribution-spec/conformance@$conf_version")
mod_dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$mod_json")
mod_ver=$(sed -n 's/^[[:space:]]*"Version": "\(.*\)",\{0,1\}$/\1/p' <<<"$mod_json")
if [[ -z $mod_dir || ! -d $mod_dir ]]; then
	echo "could not download the conformance module:" >&2
	echo "$mod_json" >&2
	exit 1
fi
echo "   module version $mod_ver"
cp -r "$mod_dir" "$work/suite"
chmod -R u+w "$work/suite"
(cd "$work/suite" && GOFLAGS=-mod=mod GOWORK=off go build -buildvcs=false \
	-ldflags "-X main.Version=$mod_ver" -o "$work/conformance" .)

echo "== starting berth registry serve"
mkdir -p "$work/root"
"$work/berth" registry serve --root "$work/root" --addr 127.0.0.1:0 --log-level info \
	2>"$work/server.log" &
server_pid=$!
addr=
for _ in $(seq 1 100); do
	addr=$(sed -n 's/.*msg="registry listening" addr=\([^ ]*\).*/\1/p' "$work/server.log" | head -n1)
	[[ -n $addr ]] && break
	if ! kill -0 "$server_pid" 2>/dev/null; then
		cat "$work/server.log" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ -z $addr ]]; then
	echo "registry did not start:" >&2
	cat "$work/server.log" >&2
	exit 1
fi
echo "   listening on $addr"

echo "== running the suite (OCI_VERSION=$oci_version)"
status=0
(
	cd "$work"
	env OCI_REGISTRY="$addr" \
		OCI_TLS=disabled \
		OCI_REPO1=conformance/repo1 \
		OCI_REPO2=conformance/repo2 \
		OCI_VERSION="$oci_version" \
		OCI_API_PULL=true OCI_API_PUSH=true \
		OCI_API_TAGS_LIST=true OCI_API_REFERRER=true \
		OCI_API_TAGS_DELETE=true OCI_API_MANIFESTS_DELETE=true OCI_API_BLOBS_DELETE=true \
		OCI_RESULTS_DIR="$work/results" \
		"$work/conformance" >"$work/output.txt" 2>&1
) || status=$?

# The summary: overall result, counts, the per-API and per-data tables, and any errors.
sed -n '/^OCI Conformance Result/,$p' "$work/output.txt"
if [[ $status -ne 0 ]]; then
	echo "== failing tests"
	grep -E 'FAIL|Error|error' "$work/output.txt" | head -n 60 || true
	echo "== server log (last lines)"
	tail -n 20 "$work/server.log"
fi
if [[ -n ${RESULTS_DIR:-} ]]; then
	mkdir -p "$RESULTS_DIR"
	cp "$work/output.txt" "$work/results/"* "$RESULTS_DIR/" 2>/dev/null || true
	echo "results kept in $RESULTS_DIR"
fi
exit "$status"
