# meshaccel: the two commands of the README, and the pieces they are made of.
# Everything runs as root on a Debian 12 host (BPF, network namespaces, apt).

PY := .venv/bin/python
# The workspace's Python packages (README "Layout").
PACKAGES := api/meshaccel_api node-agent/meshaccel_agent operator/meshaccel_operator cli/meshaccel \
	images/meshaccel_images e2e/meshaccel_e2e lab/meshaccel_lab monitoring/meshaccel_monitoring
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test setup lint unit bpf k8s e2e images k8s-binaries bench bench-quick clean-host generate dashboard-picture

## demo: install what is needed, then run the host demo (kernel TCP vs meshaccel)
demo: setup
	$(PY) -m meshaccel_lab.demo

## test: install what is needed, then lint, type-check and run every test tier
## (the e2e tier brings the local cluster up with the images, and down again)
test: setup k8s-binaries images lint
	$(PY) -m pytest -p no:cacheprovider tests

## images: the agent, operator and e2e workload images, built offline into
## /var/cache/meshaccel/images (rebuilt only when their inputs change)
images: setup
	$(PY) -m meshaccel_images build

## k8s-binaries: kube-apiserver + etcd (and helm) for the k8s tier, built once from the Go module proxy
k8s-binaries:
	bash scripts/build-k8s.sh
	bash scripts/build-helm.sh
	bash scripts/fetch-prometheus-crds.sh

setup:
	bash scripts/setup.sh

## lint: style, types, and every generated file against its source (manifests/
## and the chart's generated parts are rendered with helm, built if absent)
lint:
	bash scripts/build-helm.sh >/dev/null
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy $(PACKAGES) tests bench
	$(PY) -m meshaccel_operator.manifests --check
	$(PY) -m meshaccel_lab.metricsdoc --check

unit: setup
	$(PY) -m pytest -p no:cacheprovider -m unit tests

bpf: setup
	$(PY) -m pytest -p no:cacheprovider -m bpf tests

k8s: setup k8s-binaries
	$(PY) -m pytest -p no:cacheprovider -m k8s tests

## e2e: the e2e tier alone (a local cluster: e2e/up, the suite, e2e/down)
e2e: setup k8s-binaries images
	$(PY) -m pytest -p no:cacheprovider -m e2e tests

## bench: kernel TCP vs meshaccel vs AF_UNIX floor, all workloads (< 20 min);
## writes bench/results/latest.{json,md} and PNG plots
bench: setup
	$(PY) -m bench.run

## bench-quick: the same with fewer and shorter repetitions (< 5 min)
bench-quick: setup
	$(PY) -m bench.run --quick

## dashboard-picture: redraw docs/dashboard.png from a real Prometheus scraping
## the e2e cluster under live traffic (the e2e tier's lifecycle file)
dashboard-picture: setup k8s-binaries images
	MESHACCEL_DASHBOARD_PICTURE=$(CURDIR)/docs/dashboard.png $(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e/test_lifecycle.py

## clean-host: uninstall a datapath left behind (detach, unpin when drained)
clean-host: setup
	.venv/bin/meshaccel-agent cleanup

## generate: regenerate the CRDs (from the API models), the chart's values,
## schema, dashboards and alerts, manifests/ (the chart rendered with its
## defaults) and the README's metrics table (from the collectors)
generate: setup
	bash scripts/build-helm.sh >/dev/null
	$(PY) -m meshaccel_operator.manifests
	$(PY) -m meshaccel_lab.metricsdoc
