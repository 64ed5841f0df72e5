"""The metrics and labels the dashboards may use that no process of the local stack exposes.

The services' own metrics are not listed here: the tests scrape them from
the local stack. What is here comes from components that run only on the
cluster, each with the source that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Labels Prometheus adds to every series of a target when it scrapes it (base/prometheus relabels
# service from the pod label app.kubernetes.io/name; job and instance are Prometheus's own).
TARGET_LABELS = frozenset({"service", "namespace", "pod", "instance", "job"})

RABBITMQ = (
    "RabbitMQ 4.1.8's rabbitmq_prometheus plugin, queue_coarse_metrics: "
    "deps/rabbitmq_prometheus/src/collectors/prometheus_rabbitmq_core_metrics_collector.erl at v4.1.8 "
    "(rabbitmq/rabbitmq-server). Per queue only on /metrics/detailed?family=queue_coarse_metrics, "
    "prefixed rabbitmq_detailed_ and labelled vhost and queue; /metrics sums every queue into one "
    "unlabelled rabbitmq_queue_messages_ready."
)
KUBE_STATE_METRICS = (
    "kube-state-metrics v2.20.0, docs/metrics/workload/horizontalpodautoscaler-metrics.md "
    "(kubernetes/kube-state-metrics): STABLE gauges labelled horizontalpodautoscaler and namespace."
)


@dataclass(frozen=True)
class External:
    labels: frozenset[str]
    source: str


EXTERNAL_METRICS = {
    "rabbitmq_detailed_queue_messages_ready": External(frozenset({"vhost", "queue"}), RABBITMQ),
    "rabbitmq_detailed_queue_messages_unacked": External(frozenset({"vhost", "queue"}), RABBITMQ),
    "rabbitmq_detailed_queue_messages": External(frozenset({"vhost", "queue"}), RABBITMQ),
    "kube_horizontalpodautoscaler_status_current_replicas": External(
        frozenset({"horizontalpodautoscaler", "namespace"}), KUBE_STATE_METRICS
    ),
    "kube_horizontalpodautoscaler_status_desired_replicas": External(
        frozenset({"horizontalpodautoscaler", "namespace"}), KUBE_STATE_METRICS
    ),
    "kube_horizontalpodautoscaler_spec_max_replicas": External(
        frozenset({"horizontalpodautoscaler", "namespace"}), KUBE_STATE_METRICS
    ),
}
