# meshmart tasks. `make` lists them; CI runs `make test`, as the README says.
.DEFAULT_GOAL := help
.PHONY: help up observe trace-picture edge test tools lint fmt deploy-check bench bench-orders bench-mesh images mesh-up mesh-test

help: ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

up: ## run the whole shop on this machine (catalog :50051, inventory :50052)
	cargo run --release -p meshctl -- up

observe: ## Jaeger (:16686) and Prometheus (:9090) beside `make up`; traces: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
	scripts/observe.sh

trace-picture: ## redraw docs/images/order-trace.png: one order's trace from a real Jaeger (Chromium via apt)
	scripts/trace-picture.sh

edge: ## REST/JSON and gRPC on 127.0.0.1:8080 in front of `make up` (Envoy from .tools)
	scripts/install-tools.sh >/dev/null
	cargo run --release -p meshctl -- edge --envoy .tools/bin/envoy

test: ## run every test: lints, deployment checks, Rust tests on SQLite and PostgreSQL
	scripts/test.sh

mesh-up: ## the shop in a mesh on this machine: istiod, Envoy sidecars, gateway (root)
	scripts/mesh.sh up

mesh-test: ## the mesh behaviour tests alone (root; `make test` runs them too)
	scripts/mesh.sh test

tools: ## install the pinned test tools into .tools/
	scripts/install-tools.sh

fmt: ## format the Rust code
	cargo fmt --all

lint: tools ## rustfmt, buf lint and breaking, cargo deny, clippy only
	cargo fmt --all --check
	.tools/bin/buf lint
	.tools/bin/buf breaking --against contracts/meshmart.binpb
	PATH="$(CURDIR)/.tools/bin:$$PATH" cargo deny --workspace --locked check -D warnings licenses bans sources
	cargo clippy --workspace --all-targets --locked -- -D warnings

deploy-check: tools ## check k8s/, istio/ and helm/ (render, schemas, cross-references, checkov, yamllint)
	scripts/check-deploy.sh

bench: ## the read path against the echo baselines (SQLite, PostgreSQL, callgrind) into docs/benchmarks.md (under 5 minutes after a build)
	scripts/bench.sh

bench-orders: ## measure placing orders on both setups into docs/benchmarks.md (about 4 minutes)
	scripts/bench-orders.sh

bench-mesh: ## measure the mesh's cost into docs/benchmarks.md (root; about 3 minutes)
	scripts/bench-mesh.sh

images: ## build every service image for linux/amd64 and linux/arm64 (needs Docker buildx)
	scripts/build-images.sh
