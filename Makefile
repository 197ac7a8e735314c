# clb-direct. `make test` is what CI runs; see README.md.
GO        ?= go
BIN       ?= bin
STATICCHECK_VERSION ?= v0.8.2
export CGO_ENABLED ?= 1

.PHONY: all build test unit fmt-check vet lint clean

all: build

build: ## Build the controller and the CLB emulator into ./bin.
	$(GO) build -o $(BIN)/clb-direct .
	@if [ -d cmd/clb-emulator ]; then $(GO) build -o $(BIN)/clb-emulator ./cmd/clb-emulator; fi

test: vet fmt-check unit ## Everything CI runs.

unit: ## Unit tests (fake clientset, fake CLB), race detector on.
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './_output/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

lint: vet fmt-check ## Static analysis beyond vet.
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf $(BIN)
