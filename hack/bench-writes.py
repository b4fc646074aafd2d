#!/usr/bin/env python3
"""What one write of a custom resource costs the hub's kube-apiserver, in CPU.

    hack/bench-writes.py [N]       N objects per step (default 1000), 8 connections

Supports the analysis in docs/performance.md: the national benchmark's operator phase is
limited by the hub API server, and this measures the price of each kind of write the
operator makes to its custom resources, on the running testbed's hub (dc1):

  create                     a new AgencyCloud (what users do)
  finalizer (JSON patch)     the controllers adding their finalizer (kube-runtime's finalizer)
  status (server-side apply) a status write, as the controllers make them
  status (merge patch)       the same change as a JSON merge patch, for comparison
  create + finalizer policy  a create while a MutatingAdmissionPolicy like the operator's
                             govcloud-finalizers adds the finalizer (if the hub serves the API)

CPU is read from /proc/<kube-apiserver pid>/stat before and after each step (utime+stime), so
anything else running on the hub at the same time counts too: run it on a quiet testbed.
The objects are AgencyClouds of a copy of the AgencyCloud CRD in its own API group
(bench-writes.govcloud.io, same schema and CEL rules), so no operator reconciles them; the
copy, its objects and the policy are removed at the end.
"""

import base64
import copy
import functools
import http.client
import json
import os
import queue
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = os.environ.get("TESTBED_STATE", os.path.expanduser("~/.cache/govcloud/testbed"))
HUB = os.path.join(STATE, "dc1")
GROUP = "bench-writes.govcloud.io"
BASE = f"/apis/{GROUP}/v1alpha1/agencyclouds"
POLICY = "govcloud-bench-writes-finalizers"
FINALIZER = "govcloud.io/agency-cleanup"


def die(msg):
    print(f"bench-writes: {msg}", file=sys.stderr)
    sys.exit(1)


class Hub:
    def __init__(self):
        kc_path = os.path.join(HUB, "kubeconfig")
        if not os.path.exists(kc_path):
            die(f"no testbed hub at {HUB} (start one: hack/testbed.sh up)")
        kc = yaml.safe_load(open(kc_path))
        server = kc["clusters"][0]["cluster"]["server"]
        self.host, port = server.replace("https://", "").split(":")
        self.port = int(port)
        user = kc["users"][0]["user"]
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.ctx.load_cert_chain(self._material(user, "client-certificate"), self._material(user, "client-key"))
        self.pid = int(open(os.path.join(HUB, "pids", "kube-apiserver.pid")).read().split()[0])

    @staticmethod
    def _material(user, key):
        if key + "-data" in user:
            f = tempfile.NamedTemporaryFile(delete=False)
            f.write(base64.b64decode(user[key + "-data"]))
            f.close()
            return f.name
        path = user[key]
        return path if os.path.isabs(path) else os.path.join(HUB, path)

    def conn(self):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx)

    def cpu(self):
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(c, method, path, body=None, ctype="application/json", ok=(200, 201)):
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers={"Content-Type": ctype})
    r = c.getresponse()
    data = r.read()
    if r.status not in ok:
        raise RuntimeError(f"{method} {path}: HTTP {r.status}: {data[:300]!r}")
    return r.status


@functools.cache
def kubectl_bin():
    """The testbed's kubectl (hack/versions.sh), resolved once."""
    return subprocess.run(
        ["bash", "-c", f"source {ROOT}/hack/versions.sh && echo $K8S_BIN/kubectl"],
        capture_output=True, text=True, check=True).stdout.strip()


def kubectl(*args, stdin=None):
    return subprocess.run([kubectl_bin(), "--kubeconfig", os.path.join(HUB, "kubeconfig"), *args],
                          input=stdin, capture_output=True, text=True)


def crd_copy():
    crd = yaml.safe_load(open(os.path.join(ROOT, "crds", "agencyclouds.yaml")))
    crd["metadata"] = {"name": f"agencyclouds.{GROUP}"}
    crd["spec"]["group"] = GROUP
    return crd


def policy(version):
    return [
        {"apiVersion": f"admissionregistration.k8s.io/{version}", "kind": "MutatingAdmissionPolicy",
         "metadata": {"name": POLICY},
         "spec": {"failurePolicy": "Ignore", "reinvocationPolicy": "Never",
                  "matchConstraints": {"resourceRules": [{"apiGroups": [GROUP], "apiVersions": ["*"],
                                                          "operations": ["CREATE"], "resources": ["agencyclouds"]}]},
                  "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression":
                      f'!has(object.metadata.finalizers) ? [JSONPatch{{op: "add", path: "/metadata/finalizers", value: ["{FINALIZER}"]}}] : []'}}]}},
        {"apiVersion": f"admissionregistration.k8s.io/{version}", "kind": "MutatingAdmissionPolicyBinding",
         "metadata": {"name": POLICY}, "spec": {"policyName": POLICY}},
    ]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    hub = Hub()
    example = yaml.safe_load(open(os.path.join(ROOT, "examples", "agencies", "zj-bigdata-external-l2.yaml")))
    run = f"bw{int(time.time()) % 100000:05d}"

    def manifest(name):
        o = copy.deepcopy(example)
        o["apiVersion"] = f"{GROUP}/v1alpha1"
        o["metadata"] = {"name": name, "labels": {"bench-writes": run}}
        o["spec"]["agency"]["shortName"] = name
        return o

    def status(name, step):
        cond = lambda t, reason, msg: {"type": t, "status": "True", "reason": reason, "message": msg,
                                       "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
        return {"observedGeneration": 1,
                "placement": {"cluster": "dc2", "region": "r1", "zone": "external"},
                "conditions": [cond("Placed", "Placed", "Placed on cluster dc2 (region r1, zone external)."),
                               cond("Isolated", "GuardrailsApplied", "Network policies, quotas and the registry policy are in force."),
                               cond("QuotaFits", "Fits", "The quota fits the cluster's free capacity."),
                               cond("Ready", "Provisioned", "2 environments provisioned.")],
                "environments": [{"name": e, "namespace": f"{name}-{e}",
                                  "hard": {"requests.cpu": "16", "requests.memory": "64Gi", "pods": "100"},
                                  "used": {"requests.cpu": f"{step}00m", "requests.memory": "0", "pods": "1"}}
                                 for e in ("prod", "test")]}

    results = []

    def step(label, names, fn):
        q = queue.Queue()
        for x in names:
            q.put(x)
        errors = []

        def worker():
            c = hub.conn()
            while True:
                try:
                    x = q.get_nowait()
                except queue.Empty:
                    return
                try:
                    fn(c, x)
                except Exception as e:  # reported below; the step's figure is then not printed
                    errors.append(str(e))
                    return

        t0, c0 = time.time(), hub.cpu()
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu, wall = hub.cpu() - c0, time.time() - t0
        if errors:
            die(f"{label}: {errors[0]}")
        results.append((label, len(names), wall, cpu))
        print(f"  {label:<34} {len(names):>5} requests  {wall:6.1f} s  kube-apiserver {cpu:6.2f} s CPU"
              f"  = {cpu / len(names) * 1000:5.2f} ms per request", flush=True)

    out = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(crd_copy()))
    if out.returncode != 0:
        die(f"cannot install the CRD copy: {out.stderr.strip()}")
    kubectl("wait", "--for=condition=Established", f"crd/agencyclouds.{GROUP}", "--timeout=60s")
    time.sleep(2)
    a = [f"{run}-a{i:05d}" for i in range(n)]
    b = [f"{run}-b{i:05d}" for i in range(n)]
    c_names = [f"{run}-c{i:05d}" for i in range(n)]
    print(f"bench-writes: {n} AgencyClouds per step on {HUB} (kube-apiserver pid {hub.pid})")
    try:
        step("create", a, lambda c, x: request(c, "POST", BASE, manifest(x)))
        step("finalizer (JSON patch)", a, lambda c, x: request(
            c, "PATCH", f"{BASE}/{x}", [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}],
            "application/json-patch+json"))
        step("status (server-side apply)", a, lambda c, x: request(
            c, "PATCH", f"{BASE}/{x}/status?fieldManager=govcloud-operator&force=true",
            {"apiVersion": f"{GROUP}/v1alpha1", "kind": "AgencyCloud", "status": status(x, 1)},
            "application/apply-patch+yaml"))
        step("status (merge patch)", a, lambda c, x: request(
            c, "PATCH", f"{BASE}/{x}/status?fieldManager=govcloud-operator",
            {"status": {"environments": status(x, 2)["environments"]}}, "application/merge-patch+json"))
        version = None
        for v in ("v1", "v1beta1"):
            r = kubectl("get", "--raw", f"/apis/admissionregistration.k8s.io/{v}")
            if version is None and r.returncode == 0 and '"mutatingadmissionpolicies"' in r.stdout:
                version = v
        if version:
            out = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": policy(version)}))
            if out.returncode != 0:
                die(f"cannot install the test policy: {out.stderr.strip()}")
            time.sleep(3)  # the API server loads new policies within a second or two
            step("create + finalizer policy", b, lambda c, x: request(c, "POST", BASE, manifest(x)))
            kubectl("delete", "mutatingadmissionpolicybinding,mutatingadmissionpolicy", POLICY)
            time.sleep(3)
            # Costs grow a little with the objects already stored: a create without the
            # policy after it, so that the comparison is not flattered by the order.
            step("create (again, no policy)", c_names, lambda c, x: request(c, "POST", BASE, manifest(x)))
        else:
            print("  (the hub serves no MutatingAdmissionPolicy API: the policy step is skipped)")
    finally:
        kubectl("delete", "mutatingadmissionpolicybinding,mutatingadmissionpolicy", POLICY, "--ignore-not-found")
        kubectl("delete", "crd", f"agencyclouds.{GROUP}", "--wait=false")
        # The CRD's deletion removes its objects; their finalizers would hold it: drop them.
        c = hub.conn()
        for x in a + b + c_names:
            try:
                request(c, "PATCH", f"{BASE}/{x}", {"metadata": {"finalizers": None}},
                        "application/merge-patch+json", ok=(200, 404))
            except Exception:
                c = hub.conn()
    per = {label: cpu / count * 1000 for label, count, _, cpu in results}
    if "create + finalizer policy" in per:
        create = (per["create"] + per["create (again, no policy)"]) / 2
        saved = create + per["finalizer (JSON patch)"] - per["create + finalizer policy"]
        print(f"bench-writes: a finalizer added at admission instead of by a write saves {saved:.2f} ms of "
              f"kube-apiserver CPU per object (create {create:.2f} (mean of both) + finalizer "
              f"{per['finalizer (JSON patch)']:.2f} → {per['create + finalizer policy']:.2f} ms)")


if __name__ == "__main__":
    main()
