// Package deploy holds omsd's deployment files: the compose topology
// (compose/), the Kubernetes manifests (k8s/), the Prometheus rules and
// scrape configuration (prometheus/), the Grafana dashboard and its
// provisioning (grafana/) and the runbook (RUNBOOK.md). Its tests load each
// of them the way its tool would (compose-go, the Kubernetes API types,
// promtool) and check the properties the operations depend on.
package deploy
