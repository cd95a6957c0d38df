# process-wrapper: `make run` starts the wrapper on the demo config,
# `make test` runs every test of every module, `make bench` prints the
# figures of the README.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
PKG := github.com/process-wrapper/process-wrapper
LDFLAGS := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
BINARIES := process-wrapper shared-lock metadata-mock metrics-mock
# The wrapper is injected into other images and its idle RSS is mostly its
# own pages: dependencies are compiled without inlining (-1 MB of binary,
# -0.5 MiB of RSS), except the runtime, the packages on the log relay's hot
# path and the project's own code (no measurable cost, see README).
NOINLINE := -gcflags=all=-l -gcflags=runtime/...= -gcflags=internal/...= -gcflags=sync/...= \
	-gcflags=syscall= -gcflags=os= -gcflags=time= -gcflags=bytes= -gcflags=encoding/binary= \
	-gcflags=unicode/...= -gcflags=$(PKG)/...=
# every module but cmd (mains only) and integration (run by test-integration)
MODULES := internal wrapper sharedlock metadatamock metricsmock prommerge
# fuzzing budgets in executions, about 10 s each here: a duration budget
# races Go's fuzz coordinator at its end before Go 1.27 (golang/go#75804:
# a bare "context deadline exceeded" FAIL with no input found)
FUZZ_EXECS ?= 300000
FUZZ_EXECS_MERGE ?= 15000

.PHONY: all build run test test-unit test-race test-fuzz test-integration vet bench clean docker-build-slim

all: build

build: $(addprefix bin/,$(BINARIES)) bin/testchild

bin/%: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

# BIN_OUT puts the wrapper elsewhere (the size test builds it as this does)
bin/process-wrapper: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' $(NOINLINE) -o $(or $(BIN_OUT),$@) ./cmd/process-wrapper

bin/testchild: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ ./internal/testchild

# what the wrapper's start costs before its own code runs (make bench)
bin/floor: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' $(NOINLINE) -o $@ ./integration/bench/floor

FORCE:

run: build
	./bin/process-wrapper -config examples/demo.yaml

vet:
	$(GO) vet $(addsuffix /...,$(addprefix ./,$(MODULES) cmd integration))
	@out=$$(gofmt -l $(MODULES) cmd integration); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The run's own PostgreSQL, RabbitMQ and etcd (.ci/services): started on
# ports chosen free, their addresses passed to the tests through the
# environment, stopped at the end whether the tests pass or not.
test: vet
	@run=$$(.ci/services start) && trap '.ci/services stop '"$$run" EXIT && . "$$run/env" && \
		$(MAKE) --no-print-directory test-race test-unit test-fuzz test-integration test-kube

# the wrapper module under the race detector (its end-to-end tests then run a
# race-built wrapper binary too), and the shared-lock server (its lease pool,
# watch and handlers share state)
test-race:
	$(GO) test -race -count=1 -timeout 15m ./wrapper/... ./sharedlock/...

# sharedlock again without the race detector: its timing goals (a departed
# waiter gone within a second) are checked at full speed there
test-unit:
	$(GO) test -count=1 -timeout 10m $(addsuffix /...,$(addprefix ./,$(filter-out wrapper,$(MODULES)) cmd))

# each fuzz target briefly, from its seed corpus on
test-fuzz:
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime $(FUZZ_EXECS)x -fuzzminimizetime 1000x ./wrapper/config
	$(GO) test -run XXX -fuzz FuzzLine -fuzztime $(FUZZ_EXECS)x -fuzzminimizetime 1000x ./internal/logline
	$(GO) test -run XXX -fuzz FuzzMerge -fuzztime $(FUZZ_EXECS_MERGE)x -fuzzminimizetime 1000x ./prommerge

test-integration:
	TESTCONTAINERS_RYUK_DISABLED=true $(GO) test -count=1 -timeout 15m $$(cd integration && $(GO) list ./... | grep -v '/integration/kube$$' | sed 's|^github.com/process-wrapper/process-wrapper/integration|./integration|')

# the suite in a real single-node cluster of the run's own (integration/kube),
# alone: Docker is idle meanwhile, so that the host it leaves can be compared
# with the host it found
test-kube: kube-bin
	cd integration && PW_KUBE_BIN=$(KUBE_BIN) PW_KUBE_DNS=$(DNS_BIN) $(GO) test -count=1 -timeout 20m -v ./kube/

# the same cluster for a person (KUBECONFIG printed), with the images of
# docker-build-slim imported; kube-down removes it and restores the host
KUBE_UP_DIR ?= /var/tmp/pw-kube-up
kube-up: docker-build-slim kube-bin
	@cd integration && $(GO) run ./cluster/up -dir $(KUBE_UP_DIR) -kube $(KUBE_BIN) -dns $(DNS_BIN) \
		-import $(subst $(eval) ,$(comma),$(foreach m,$(IMAGES),$(IMAGE_REPO)/$(lastword $(subst :, ,$(m))):$(IMAGE_TAG)))

kube-down:
	@cd integration && $(GO) run ./cluster/up -down

# the peers measured beside the wrapper come from Debian's packages; the
# shared lock is measured against the etcd of .ci/services too
bench: build bin/floor
	@command -v tini >/dev/null && command -v dumb-init >/dev/null && command -v supervisord >/dev/null && command -v wrk >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tini dumb-init supervisor wrk; }
	$(GO) test -run XXX -bench . -benchmem ./internal/logline ./wrapper/relay ./wrapper/health
	@# the real servers only around the benchmark that needs one (etcd): on
	@# 2 cores their idle work (RabbitMQ's schedulers) made each start 15 % slower, tini's too
	@run=$$(.ci/services start) && trap '.ci/services stop '"$$run" EXIT && . "$$run/env" && \
		$(GO) test -run XXX -bench 'AcquireRelease|Departures' -benchtime 1x ./sharedlock
	$(GO) test -run XXX -bench Merge -benchmem ./prommerge
	$(GO) run ./integration/bench -bin bin

# Images FROM scratch (nothing pulled) from the binaries `make build` made:
# each binary's module holds its Dockerfile; the context is prepared under
# build/images/. With upx on the machine the binaries are packed first.
IMAGE_REPO ?= process-wrapper
IMAGE_TAG ?= latest
UPX ?= upx
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
IMAGES := wrapper:process-wrapper sharedlock:shared-lock metadatamock:metadata-mock metricsmock:metrics-mock

docker-build-slim: build
	@test -f $(CA_BUNDLE) || { echo "docker-build-slim: $(CA_BUNDLE) missing (Debian's ca-certificates package)"; exit 1; }
	@if ! command -v $(UPX) >/dev/null; then echo "docker-build-slim: $(UPX) is not on this machine: the images carry the binaries unpacked"; fi
	@set -e; for m in $(IMAGES); do dir=$${m%%:*}; bin=$${m##*:}; ctx=build/images/$$bin; \
		rm -rf $$ctx; mkdir -p $$ctx/root/tmp; chmod 1777 $$ctx/root/tmp; \
		if [ $$bin = process-wrapper ]; then mkdir -p $$ctx/root/install; chmod 1777 $$ctx/root/install; fi; \
		if [ $$bin = shared-lock ]; then mkdir -p $$ctx/root/var/lib/shared-lock; chmod 1777 $$ctx/root/var/lib/shared-lock; fi; \
		tar -C $$ctx/root --owner=0 --group=0 --numeric-owner -cf $$ctx/root.tar .; \
		cp $(CA_BUNDLE) $$ctx/ca-certificates.crt; cp bin/$$bin $$ctx/$$bin; \
		if command -v $(UPX) >/dev/null; then before=$$(stat -c %s $$ctx/$$bin); $(UPX) -q --best --lzma $$ctx/$$bin >/dev/null; \
			echo "$$bin: $$before bytes, $$(stat -c %s $$ctx/$$bin) packed"; fi; \
		out=$$(DOCKER_BUILDKIT=0 docker build -q -f $$dir/Dockerfile -t $(IMAGE_REPO)/$$bin:$(IMAGE_TAG) $$ctx 2>&1) || { echo "$$out"; exit 1; }; \
		echo "$(IMAGE_REPO)/$$bin:$(IMAGE_TAG) $$(docker image inspect -f '{{.Size}}' $(IMAGE_REPO)/$$bin:$(IMAGE_TAG)) bytes"; \
	done

clean:
	rm -rf bin build

# The test cluster's Kubernetes, one binary for every component
# (integration/cluster/kubebin, a module of its own outside go.work), built
# once per version and source into a cache outside the clone: ~11 min on 2
# cores the first time, nothing after.
KUBE_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/process-wrapper/kube
KUBE_VERSION := $(shell sed -n 's/^[[:space:]]*\(require \)\{0,1\}k8s.io\/kubernetes \(v[0-9.]*\)$$/\2/p' integration/cluster/kubebin/go.mod)
KUBE_BIN = $(KUBE_CACHE)/kube-$(KUBE_VERSION)-$(shell cat integration/cluster/kubebin/go.mod integration/cluster/kubebin/go.sum integration/cluster/kubebin/main.go | sha256sum | cut -c1-12)
KUBE_MINOR = $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_LDFLAGS = -s -w $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(KUBE_MINOR))
# and its DNS, CoreDNS with the plugins it uses (integration/cluster/dnsbin):
# ~2 min the first time
DNS_VERSION := $(shell sed -n 's/^require github.com\/coredns\/coredns \(v[0-9.]*\)$$/\1/p' integration/cluster/dnsbin/go.mod)
DNS_BIN = $(KUBE_CACHE)/coredns-$(DNS_VERSION)-$(shell cat integration/cluster/dnsbin/go.mod integration/cluster/dnsbin/go.sum integration/cluster/dnsbin/main.go | sha256sum | cut -c1-12)

comma := ,
.PHONY: kube-bin kube-up kube-down test-kube
kube-bin:
	@if [ ! -x "$(KUBE_BIN)" ]; then mkdir -p "$(KUBE_CACHE)" && echo "building Kubernetes $(KUBE_VERSION) (once per version: ~11 min)" >&2 && \
		cd integration/cluster/kubebin && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o "$(KUBE_BIN).tmp" . && \
		mv "$(KUBE_BIN).tmp" "$(KUBE_BIN)"; fi
	@if [ ! -x "$(DNS_BIN)" ]; then echo "building CoreDNS $(DNS_VERSION) (once per version: ~2 min)" >&2 && \
		cd integration/cluster/dnsbin && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o "$(DNS_BIN).tmp" . && \
		mv "$(DNS_BIN).tmp" "$(DNS_BIN)"; fi
	@echo "$(KUBE_BIN) $(DNS_BIN)" >&2
