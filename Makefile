# Loom's developer targets. `make test` is what CI runs (.ci/run).
GO      ?= go
# Numeric packages run without the race detector (it slows float loops ~10x
# and they start no goroutines of interest); everything else runs with -race.
NORACE  := $(shell $(GO) list ./kernels/... ./models/... 2>/dev/null)
RACE    := $(filter-out $(NORACE),$(shell $(GO) list ./... 2>/dev/null))
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test test-short chaos fmt-check vet bench lint proto build shaders k8s-build k8s-up k8s-down

build:
	$(GO) build ./...

test: fmt-check vet
	$(GO) test -race -timeout 20m $(RACE)
	$(if $(NORACE),$(GO) test -timeout 20m $(NORACE))
	# The pure-Go fallbacks of the assembly kernels, as on a CPU without AVX.
	$(GO) test -tags noasm -timeout 10m ./kernels/...

# The same suites with -short: skips the slowest scenarios, for a quick loop.
test-short: fmt-check vet
	$(GO) test -race -short $(RACE)
	$(if $(NORACE),$(GO) test -short $(NORACE))

# The fault-injection suite's long form: three seeds, every fault kind, on a
# cluster of real processes (docs/chaos.md). `make test` runs its short form.
# Needs versitygw (see .ci/run); root for the full-disk fault (a tmpfs).
chaos:
	$(GO) test -count=1 -timeout 60m -run TestChaos -v ./internal/chaos -chaos.long

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Go benchmarks of every package; the `loom bench ...` commands produce the
# side-by-side ratios recorded in docs/BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	$(GO) run $(STATICCHECK) ./...

# Regenerates the protobuf code in api/ (generated code is committed).
# Needs protoc (Debian: protobuf-compiler) and the Go plugins, which
# api/gen.sh installs at pinned versions.
proto:
	@if [ -f api/gen.sh ]; then bash api/gen.sh; else echo "no protobuf sources yet"; fi

# Recompiles the Vulkan backend's GLSL shaders to the committed SPIR-V
# (kernels/vulkan/spv). Needs glslc (Debian: glslc).
shaders:
	bash kernels/vulkan/shaders/build.sh

# A local Kubernetes control plane with simulated nodes, for trying deploy/k8s
# (docs/deploy.md) and for internal/k8stest: kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl built from the Go module
# proxy (deploy/k8s/controlplane/tools/go.mod), Debian's etcd-server, kwok.
# The binaries are cached under $$HOME/.cache/loom/k8s; k8s-build builds them
# only when that cache lacks them. LOOM_K8S_DIR and LOOM_K8S_PORT choose the
# state directory and the API server's port (deploy/k8s/controlplane/up.sh).
k8s-build:
	deploy/k8s/controlplane/up.sh --build-only

k8s-up:
	deploy/k8s/controlplane/up.sh

k8s-down:
	deploy/k8s/controlplane/down.sh
