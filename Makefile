# sqlcache. The two commands a newcomer needs: make demo, make test.
GO       ?= go
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# An execution count, not a duration: with go1.26 a duration's deadline
# races the fuzz workers and fails the run for nothing (golang/go#75804).
FUZZTIME ?= 100000x

.PHONY: all build test deps lint unit fuzz demo bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/sqlcache ./cmd/sqlcache

# Everything CI runs (.ci/run runs exactly this).
test: deps lint unit fuzz

# Server binaries the integration tests start: installed with apt-get when
# run as root, else a clear failure naming the packages. Never a skip.
deps:
	@scripts/ensure-packages.sh

# vet -race checks the build unit's tests then reuse (a plain vet would
# compile everything, PostgreSQL's parser in C among it, once more: a
# minute on 2 cores); rawconn's one !race file is vetted on its own.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet -race ./...
	$(GO) vet ./proxy/internal/rawconn

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

demo: build
	@scripts/demo.sh

bench:
	@$(MAKE) --no-print-directory build
	$(GO) run ./bench/cmd/sqlbench -duration 2s -warmup 1s -rounds 3 -memory-timeout 120s $(BENCH_FLAGS)

clean:
	rm -rf bin
