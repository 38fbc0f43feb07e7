# mcpmesh — build, test, lint.
GO        ?= go
# hashicorpmetrics selects hashicorp/go-metrics in libraries that still go
# through its compat layer (memberlist, for federation). raft v1.8 already
# reports through hashicorp/go-metrics, which the binary routes to /metrics.
TAGS      ?= hashicorpmetrics
BIN       := bin/mcpmesh
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
TESTFLAGS ?= -race -shuffle=on -timeout 15m

.PHONY: build test unit e2e bench lint fuzz clean

build:
	$(GO) build -tags $(TAGS) -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/mcpmesh

# Every test: unit, in-process cluster, and end-to-end tests of the real
# binary (which find it through MCPMESH_BIN).
test: build monitoring patched-sdk
	MCPMESH_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(TAGS) $(TESTFLAGS) ./...

# The alert rules and the Grafana dashboard of deploy/ (deploy/check, a
# module of its own: it needs the Prometheus server's packages). Every alert
# is evaluated on a sample of its trouble and a healthy one, and every
# metric the two name must be one mcpmesh exports.
.PHONY: monitoring
monitoring:
	cd deploy/check && $(GO) test -count=1 ./...

# The go-sdk is built from third_party/go-sdk, v1.8.0 with three patches
# (PATCHES.md): its JSON package's tests, the checks of the patches
# (TestPatched*), and the release's own tests of mcp and internal/jsonrpc2
# run against the patched sources (upstream-tests.sh); and
# segmentio/encoding, which go-sdk decodes with, from
# third_party/segmentio-encoding with one patch: its check.
.PHONY: patched-sdk
patched-sdk:
	cd third_party/go-sdk && $(GO) test -count=1 ./internal/json/ && $(GO) test -count=1 -run TestPatched ./mcp/
	bash third_party/go-sdk/upstream-tests.sh
	cd third_party/segmentio-encoding && $(GO) test -count=1 ./json/

unit:
	$(GO) test -tags $(TAGS) $(TESTFLAGS) $$($(GO) list ./... | grep -v /test/)

e2e: build
	MCPMESH_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(TAGS) -count=1 -v -timeout 15m ./test/e2e/

# Benchmarks of a real 3-node cluster on loopback (see test/bench): the
# write and read benchmarks 2000 operations each, then the failover one
# (a leader kill per iteration) 5 times. Compare runs with benchstat.
bench: build
	MCPMESH_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(TAGS) -run '^$$' -bench 'Registry' -benchtime 2000x -timeout 20m ./test/bench/
	MCPMESH_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(TAGS) -run '^$$' -bench 'Failover' -benchtime 5x -timeout 20m ./test/bench/

# Federation benchmarks: the cross-BU call against the same call made
# locally, both eras, at concurrency 1 and 8 (gatewayload -federation:
# direct, through hr's node, through hr's then finance's node over HTTP/3,
# interleaved; FEDLOAD adds flags, e.g. FEDLOAD='-profile out'), then
# manifest-revocation and kill-switch propagation (test/bench, 5 each).
FEDLOAD ?= -calls 10000 -rounds 20 -warmup 500
.PHONY: bench-federation
bench-federation: build
	$(GO) run -tags $(TAGS) ./test/bench/gatewayload -mcpmesh $(CURDIR)/$(BIN) -federation -concurrency 1,8 -era 2026-07-28 $(FEDLOAD)
	$(GO) run -tags $(TAGS) ./test/bench/gatewayload -mcpmesh $(CURDIR)/$(BIN) -federation -concurrency 1,8 -era 2025-11-25 $(FEDLOAD)
	MCPMESH_BIN=$(CURDIR)/$(BIN) $(GO) test -tags $(TAGS) -run '^$$' -bench 'ManifestRevocation|KillSwitchPropagation' -benchtime 5x -timeout 20m ./test/bench/

# Load benchmark of the MCP gateway (test/bench/gatewayload): one tools/call
# workload against the upstream directly, through httputil.ReverseProxy and
# through a node, interleaved; reports added latency and CPU per call.
# GATEWAYLOAD adds flags, e.g. GATEWAYLOAD='-era 2025-11-25 -profile out'.
GATEWAYLOAD ?=
.PHONY: bench-gateway
bench-gateway: build
	$(GO) run -tags $(TAGS) ./test/bench/gatewayload -mcpmesh $(CURDIR)/$(BIN) -concurrency 1,8 $(GATEWAYLOAD)

# The example mesh for real (examples/demo): two BUs (hr, finance) x three
# node processes, federated by a signed manifest, with the example servers
# and the example agent calling across them; runs until Ctrl-C. DEMO adds
# flags, e.g. DEMO=-once, or DEMO='-base-port 0' for free ports.
DEMO ?=
.PHONY: demo
demo: build
	$(GO) build -o bin/example-agent ./examples/agent
	$(GO) build -o bin/exampleserver ./examples/servers/cmd/exampleserver
	$(GO) run ./examples/demo -bin $(BIN) -agent bin/example-agent -exampleserver bin/exampleserver $(DEMO)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TAGS) ./...
	cd deploy/check && $(GO) vet ./...

# The official MCP conformance suite (npx @modelcontextprotocol/conformance)
# against the go-sdk's fixture directly and through the gateway, for both
# requirement sets (test/conformance). Needs the npm registry; installs
# Node.js 22 under .cache/conformance when the machine's node is older, and
# keeps the suite's per-scenario results in .cache/conformance/results.
# `make test` runs it too; this target runs it alone and verbosely.
.PHONY: conformance
conformance: build
	MCPMESH_BIN=$(CURDIR)/$(BIN) MCPMESH_CONFORMANCE_RESULTS=$(CURDIR)/.cache/conformance/results $(GO) test -tags $(TAGS) -count=1 -v -timeout 20m ./test/conformance/

# Short fuzzing of every parser of outside input (FUZZTIME per target).
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./registry/card/
	$(GO) test -run '^$$' -fuzz FuzzDecodeLog -fuzztime $(FUZZTIME) ./registry/raftstore/
	$(GO) test -run '^$$' -fuzz FuzzLogRoundTrip -fuzztime $(FUZZTIME) ./registry/raftstore/
	$(GO) test -run '^$$' -fuzz FuzzReadSnapshot -fuzztime $(FUZZTIME) ./registry/state/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./node/config/
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime $(FUZZTIME) ./node/validate/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./node/validate/
	$(GO) test -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME) ./node/validate/
	$(GO) test -run '^$$' -fuzz FuzzServeHTTP -fuzztime $(FUZZTIME) ./node/gateway/
	$(GO) test -run '^$$' -fuzz FuzzUnwrapState -fuzztime $(FUZZTIME) ./node/gateway/
	$(GO) test -run '^$$' -fuzz FuzzUpstreamURI -fuzztime $(FUZZTIME) ./node/gateway/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./trust/apikey/
	$(GO) test -run '^$$' -fuzz FuzzBearer -fuzztime $(FUZZTIME) ./trust/agentauth/
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME) ./trust/tokens/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./node/audit/
	cd third_party/go-sdk && $(GO) test -run '^$$' -fuzz FuzzPatchedUnmarshalMatchesOriginal -fuzztime $(FUZZTIME) ./internal/json/
	$(GO) test -run '^$$' -fuzz FuzzParseLimits -fuzztime $(FUZZTIME) ./registry/apply/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzParseQuotas$$' -fuzztime $(FUZZTIME) ./registry/apply/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzParseExports$$' -fuzztime $(FUZZTIME) ./registry/apply/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./trust/manifest/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./trust/manifest/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzFetchedBundle$$' -fuzztime $(FUZZTIME) ./trust/bundles/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzClaims$$' -fuzztime $(FUZZTIME) ./federation/assertion/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./federation/assertion/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzVerifyX5C$$' -fuzztime $(FUZZTIME) ./federation/assertion/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzDecodeCatalog$$' -fuzztime $(FUZZTIME) ./federation/catalog/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzDecodeHint$$' -fuzztime $(FUZZTIME) ./federation/gossip/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzParseKeyring$$' -fuzztime $(FUZZTIME) ./federation/gossip/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzVerifyPeer$$' -fuzztime $(FUZZTIME) ./federation/peer/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzParseTimeout$$' -fuzztime $(FUZZTIME) ./node/upstream/

clean:
	rm -rf bin examples/cluster/data
