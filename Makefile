# omsd: make deps | demo | test | bench | lint
GO        ?= go
GOFLAGS   ?=
STATE_DIR ?= .oms-dev
export GOFLAGS

.PHONY: deps demo dev test test-short bench lint build rules

## deps: install the service binaries the local stack runs (Debian/Ubuntu) and the Go modules
deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: redis-server, redis-cli, kcat and PostgreSQL are installed"; fi
	@if ! command -v promtool >/dev/null 2>&1; then \
		echo "installing: prometheus (for promtool)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; \
	fi
	$(GO) mod download

build:
	$(GO) build -o bin/ ./cmd/...

## demo: start the local stack, run the flash-sale demo on it, print the report, stop everything
demo: deps
	$(GO) run ./cmd/omsd dev --state-dir $(STATE_DIR) --demo $(ARGS)

## dev: start the local stack and omsd, until Ctrl-C
dev: deps
	$(GO) run ./cmd/omsd dev --state-dir $(STATE_DIR) $(ARGS)

## test: the whole suite, integration tests included, against the local stack, with the race detector
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: alternatives side by side (Redis vs SQL, group vs per-order commit, sourcing sizes), the capacity stage (HTTP ceiling, closed-loop capacity, CPU per order, open-model p99) and the end-to-end ramp
bench: deps
	$(GO) run ./cmd/oms-bench -out bench/results

## rules: check the Prometheus scrape configuration and alerting rules and run the rules' unit tests (promtool, from make deps)
rules:
	@command -v promtool >/dev/null 2>&1 || { echo "promtool not found: run make deps (Debian package prometheus)"; exit 1; }
	cd deploy/prometheus && promtool check config prometheus.yml && promtool check rules alerts.yml && promtool test rules alerts_test.yml

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
