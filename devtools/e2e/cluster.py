"""The platform in a Kubernetes cluster, as the e2e workflow runs it.

The checks move workloads with the official Kubernetes client (scale the
StatefulSets, delete the billing pod, wait for rollouts) and reach the
gateway, the billing database and the broker through `kubectl
port-forward`, which NetworkPolicies do not block.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import pika
import psycopg
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from devtools.e2e.access import Broker, OrdersDatabase, OrderWriteGate
from moviestream_common.rabbitmq import BillingQueue

FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


class ClusterError(RuntimeError):
    pass


class PortForward:
    """`kubectl port-forward` to a Service on a free local port, for as long as it is open."""

    def __init__(self, namespace: str, service: str, port: int) -> None:
        self.process = subprocess.Popen(
            ["kubectl", "port-forward", "-n", namespace, f"svc/{service}", f":{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        match = FORWARDING.search(line)
        if not match:
            self.close()
            raise ClusterError(f"kubectl port-forward to {service}:{port} failed: {line.strip()}")
        self.local_port = int(match[1])
        # kubectl writes a line per connection; unread, they fill the pipe and kubectl stops forwarding.
        self.last_lines: collections.deque[str] = collections.deque(maxlen=20)
        threading.Thread(target=self._drain, name=f"port-forward {service}", daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.last_lines.append(line.rstrip())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class ClusterPlatform:
    def __init__(self, namespace: str = "moviestream", timeout: float = 600) -> None:
        config.load_kube_config()
        self.namespace = namespace
        self.timeout = timeout
        self.apps = client.AppsV1Api()
        self.core = client.CoreV1Api()
        self.queue = BillingQueue()
        self._gateway: PortForward | None = None
        self._database: PortForward | None = None
        self.orders = OrdersDatabase(self._billing_db)
        self.broker = Broker(self._broker_parameters, self.queue)

    def __enter__(self) -> ClusterPlatform:
        self.wait_until_ready()
        self._gateway = PortForward(self.namespace, "api-gateway", 3000)
        self.gateway_url = f"http://127.0.0.1:{self._gateway.local_port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        for forward in (self._gateway, self._database):
            if forward:
                forward.close()

    # -- readiness ------------------------------------------------------------

    def _workloads(self) -> list[tuple[str, str, int, int]]:
        found = [
            ("Deployment", d.metadata.name, d.spec.replicas or 0, d.status.ready_replicas or 0)
            for d in self.apps.list_namespaced_deployment(self.namespace).items
        ]
        found += [
            ("StatefulSet", s.metadata.name, s.spec.replicas or 0, s.status.ready_replicas or 0)
            for s in self.apps.list_namespaced_stateful_set(self.namespace).items
        ]
        return found

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            workloads = self._workloads()
            waiting = [f"{kind}/{name} {ready}/{wanted}" for kind, name, wanted, ready in workloads if ready < wanted]
            if workloads and not waiting:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"not ready after {self.timeout:g} s: {', '.join(waiting) or 'no workloads'}")
            print(f"waiting for {', '.join(waiting) or 'workloads'}", flush=True)
            time.sleep(5)

    def _scale(self, statefulset: str, replicas: int) -> None:
        self.apps.patch_namespaced_stateful_set_scale(statefulset, self.namespace, {"spec": {"replicas": replicas}})
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.apps.read_namespaced_stateful_set(statefulset, self.namespace).status
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"app.kubernetes.io/name={statefulset}")
            if replicas == 0 and not pods.items:
                return
            if replicas and (status.ready_replicas or 0) >= replicas:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"StatefulSet/{statefulset} did not reach {replicas} replica(s)")
            time.sleep(1)

    # -- levers ------------------------------------------------------------------

    def stop_billing(self) -> None:
        self._scale("billing-app", 0)

    def start_billing(self) -> None:
        self._scale("billing-app", 1)

    def kill_billing(self) -> None:
        try:
            killed = self.core.read_namespaced_pod("billing-app-0", self.namespace).metadata.uid
            self.core.delete_namespaced_pod("billing-app-0", self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        # Gone once no pod of that name, or only its replacement, is left: until then the
        # StatefulSet may still count the killed pod as ready.
        deadline = time.monotonic() + self.timeout
        while self._pod_uid("billing-app-0") == killed:
            if time.monotonic() > deadline:
                raise ClusterError("billing-app-0 was not gone after it was killed")
            time.sleep(0.5)

    def _pod_uid(self, name: str) -> str | None:
        try:
            return self.core.read_namespaced_pod(name, self.namespace).metadata.uid
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def stop_broker(self) -> None:
        self._scale("rabbitmq", 0)

    def start_broker(self) -> None:
        self._scale("rabbitmq", 1)

    def count_orders(self, user_id: int) -> int:
        return self.orders.count(user_id)

    def order_write_gate(self) -> OrderWriteGate:
        return self.orders.write_gate()

    def publish_raw(self, body: bytes, message_id: str) -> None:
        with self._broker_forward():
            self.broker.publish_raw(body, message_id)

    def dead_letter_reasons(self, message_id: str) -> list[str]:
        with self._broker_forward():
            return self.broker.dead_letter_reasons(message_id)

    # -- connections -----------------------------------------------------------------

    def _secret(self, name: str) -> dict[str, str]:
        data = self.core.read_namespaced_secret(name, self.namespace).data or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def _billing_db(self) -> psycopg.Connection:
        if self._database is None or self._database.process.poll() is not None:
            self._database = PortForward(self.namespace, "billing-db", 5432)
        credentials = self._secret("billing-db")
        return psycopg.connect(
            host="127.0.0.1",
            port=self._database.local_port,
            dbname="billing_db",
            user=credentials["username"],
            password=credentials["password"],
            autocommit=True,
            connect_timeout=5,
        )

    @contextlib.contextmanager
    def _broker_forward(self) -> Iterator[None]:
        # The broker may have been restarted by a check; a fresh forward finds the new pod.
        forward = PortForward(self.namespace, "rabbitmq", 5672)
        self._broker_port = forward.local_port
        try:
            yield
        finally:
            forward.close()

    def _broker_parameters(self) -> pika.ConnectionParameters:
        credentials = self._secret("rabbitmq")
        return pika.ConnectionParameters(
            host="127.0.0.1",
            port=self._broker_port,
            credentials=pika.PlainCredentials(credentials["username"], credentials["password"]),
            connection_attempts=3,
            retry_delay=1,
        )
