# clb-direct. `make test` is what CI runs; see README.md.
GO        ?= go
BIN       ?= bin
STATICCHECK_VERSION ?= v0.8.2
export CGO_ENABLED ?= 1

.PHONY: all build test unit fuzz-short e2e chaos chaos-short bench fmt-check vet lint sandbox sandbox-down clean

all: build

build: ## Build the controller and the CLB emulator into ./bin.
	$(GO) build -o $(BIN)/clb-direct .
	@if [ -d cmd/clb-emulator ]; then $(GO) build -o $(BIN)/clb-emulator ./cmd/clb-emulator; fi

test: vet fmt-check unit fuzz-short e2e chaos-short ## Everything CI runs.

unit: ## Unit tests (fake clientset, fake CLB), race detector on.
	$(GO) test -race -count=1 ./...

# go test fuzzes one target per invocation. The seed corpora (f.Add and
# testdata/fuzz/) also run as plain tests in unit.
fuzz-short: ## Every fuzz target for 5 s.
	$(GO) test -run '^$$' -fuzz '^FuzzParseServiceConfig$$' -fuzztime 5s ./controller/
	$(GO) test -run '^$$' -fuzz '^FuzzPlan$$' -fuzztime 5s ./controller/
	$(GO) test -run '^$$' -fuzz '^FuzzFromUnstructured$$' -fuzztime 5s ./tkeconfig/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime 5s ./cloud/emulator/
	$(GO) test -run '^$$' -fuzz '^FuzzInjector$$' -fuzztime 5s ./readiness/

# -p 1: one package at a time, so -v output streams as the tests run
# instead of arriving per package at the end, and the two packages' control
# planes do not compete for the CPUs (leader-election timings are tight).
e2e: ## End-to-end tests: real control plane, CLB emulator, controller binary (first run builds Kubernetes).
	CLB_DIRECT_E2E=1 $(GO) test -count=1 -p 1 -timeout 40m -v ./test/e2e/ ./test/bench/ ./test/cluster/ ./test/podsim/

# BENCH_FLAGS: see go run ./hack/bench -help (e.g. BENCH_FLAGS=--naive=false).
bench: ## Scale benchmark: cold start, steady state, churn, latency, memory, against the API's limits and a naive baseline; report in _bench/.
	$(GO) test -run '^$$' -bench . -benchmem ./controller/
	$(GO) run ./hack/bench $(BENCH_FLAGS)

# The fault-injection suite (test/chaos): faults of every kind while
# Services and Pods churn under traffic, then exact convergence, no leak,
# nothing foreign touched, no backend lost to an error. Each run starts its
# own control plane; CHAOS_RUNS runs it that many times in a row, stopping
# at the first failure; CHAOS_SEED replays a run's schedule.
CHAOS_RUNS ?= 1
CHAOS_SEED ?= 0
chaos: ## Fault-injection suite: 5 minutes of faults (CHAOS_RUNS=3 for three runs in a row).
	@for i in $$(seq $(CHAOS_RUNS)); do \
		echo "chaos run $$i of $(CHAOS_RUNS)"; \
		CLB_DIRECT_E2E=1 $(GO) test -count=1 -timeout 20m -v ./test/chaos/ -run '^TestChaos$$' \
			-args -chaos.duration=5m -chaos.seed=$(CHAOS_SEED) || exit 1; \
	done

chaos-short: ## Fault-injection suite, short: 90 s of faults, under 2 minutes in all.
	CLB_DIRECT_E2E=1 $(GO) test -count=1 -timeout 10m -v ./test/chaos/ -run '^TestChaos$$' -args -chaos.duration=90s -chaos.seed=$(CHAOS_SEED)

sandbox: ## Start the sandbox (control plane, CLB emulator, clb-direct, examples) in the background.
	$(GO) run ./hack/sandbox up

sandbox-down: ## Stop the sandbox.
	$(GO) run ./hack/sandbox down

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_output/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

lint: vet fmt-check ## Static analysis beyond vet.
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf $(BIN)
