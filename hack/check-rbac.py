#!/usr/bin/env python3
"""Least-privilege check of the chart's RBAC against what the operator really did.

The hub's API server of the testbed writes an audit log of every request made by service
accounts of the operator's namespace (hack/testbed.sh). After the integration suite ran
the operator under the chart's ServiceAccount token, this script compares the log with
the ClusterRole and Role that `helm template` renders for that ServiceAccount:

  * a rule with a wildcard (verb, resource or API group "*") fails;
  * a granted (API group, resource, verb[, resource name]) that no request used fails
    ("granted but never used": remove it, or add the test that exercises it);
  * a request the API server refused with 403 fails ("used but not granted"), unless the
    audit annotations say RBAC allowed it (an admission refusal);
  * a server-side apply (a patch with fieldManager) uses `patch` and `create`: it
    creates the object when it is missing, and the API server then checks `create`;
  * a watch with `sendInitialEvents=true` (a streamed list) uses `list` too: the operator
    lists that way, and in pages where an API server does not stream lists;
  * `escalate` on clusterroles is justified by writes of those ClusterRoles, `bind` by
    writes of RoleBindings or ClusterRoleBindings (the API server checks these verbs
    while authorizing such writes; they never appear as requests of their own).

Usage: check-rbac.py --audit LOG [--offset BYTES] [--audit LOG [--offset BYTES]...]
                     --rendered FILE [--service-account NS:NAME] [--report FILE]
                     [--not-minimal KIND/NAME]...
Several --audit logs (each with its --offset, in the same order) are read as one: the member
clusters' logs against the member manifest, whose identity is the same on each member.
Prints a table of the grants with how often each was used; exits 1 on any failure.
"""

import argparse
import collections
import json
import sys

import yaml

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def load_events(path, offset, username):
    """(group, resource, verb, namespace, name, code) of the user's completed requests."""
    events = []
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            if e.get("stage") != "ResponseComplete":
                continue
            if e.get("user", {}).get("username") != username:
                continue
            ref = e.get("objectRef")
            if not ref:
                continue  # non-resource URLs (/api, /apis discovery, /version)
            resource = ref.get("resource", "")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            code = e.get("responseStatus", {}).get("code", 0)
            # A 403 from admission (an admission policy or Pod Security refusing the object, as
            # the registry policy's probe expects) is not a missing grant: RBAC allowed it.
            decision = e.get("annotations", {}).get("authorization.k8s.io/decision", "")
            if code == 403 and decision == "allow":
                code = 200
            verb = e.get("verb", "")
            # A server-side apply (fieldManager and force in the query) creates the object
            # when it is missing, for which the API server also checks `create`.
            if verb == "patch" and "fieldManager=" in e.get("requestURI", ""):
                verb = "apply"
            events.append((ref.get("apiGroup", ""), resource, verb, ref.get("namespace", ""), ref.get("name", ""), code))
            # A watch with sendInitialEvents is a streamed list: the operator's watches list
            # that way, and in pages (`list`) where an API server refuses it.
            if verb == "watch" and code != 403 and "sendInitialEvents=true" in e.get("requestURI", ""):
                events.append((ref.get("apiGroup", ""), resource, "list", ref.get("namespace", ""), ref.get("name", ""), code))
    return events


def rules_for(rendered, sa_ns, sa_name):
    """The rules bound to the ServiceAccount: [(scope, role name, rule)], scope '' = cluster."""
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs if d["kind"] in ("ClusterRole", "Role")}
    out = []
    for d in docs:
        if d["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        subjects = d.get("subjects") or []
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and s.get("namespace") == sa_ns for s in subjects):
            continue
        ref = d["roleRef"]
        scope = "" if d["kind"] == "ClusterRoleBinding" else d["metadata"].get("namespace", sa_ns)
        key = (ref["kind"], scope if ref["kind"] == "Role" else "", ref["name"])
        role = roles.get(key)
        if role is None:
            raise SystemExit(f"check-rbac: {d['kind']} {d['metadata']['name']} refers to {ref['kind']} {ref['name']}, which the chart does not render")
        for rule in role.get("rules") or []:
            out.append((scope, f"{ref['kind']}/{ref['name']}", rule))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--audit", required=True, action="append")
    ap.add_argument("--offset", type=int, action="append", default=[])
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--service-account", default="govcloud-system:govcloud-operator")
    ap.add_argument("--report")
    ap.add_argument(
        "--not-minimal",
        action="append",
        default=[],
        help="KIND/NAME of a role checked for wildcards and refusals only, not for unused grants",
    )
    args = ap.parse_args()
    sa_ns, sa_name = args.service_account.split(":", 1)
    username = f"system:serviceaccount:{sa_ns}:{sa_name}"
    with open(args.rendered) as f:
        rules = rules_for(f.read(), sa_ns, sa_name)
    if not rules:
        print(f"check-rbac: FAIL: the chart binds no rules to {username}")
        return 1
    if len(args.offset) > len(args.audit):
        raise SystemExit("check-rbac: more --offset than --audit")
    offsets = args.offset + [0] * (len(args.audit) - len(args.offset))
    events = []
    for log, offset in zip(args.audit, offsets):
        events.extend(load_events(log, offset, username))
    if not events:
        print(f"check-rbac: FAIL: the audit log has no requests of {username} (did the suite run under the chart's ServiceAccount?)")
        return 1

    failures = []
    ok_events = [e for e in events if e[5] != 403]
    denied = collections.Counter((g, r, v, ns, n) for g, r, v, ns, n, c in events if c == 403)
    # The chart's grants do not change during the suite, so a request refused at one time
    # and allowed at another was refused by an API server that had just restarted (the fault
    # suite restarts the hub's) and whose authorizer had not yet loaded the RBAC objects:
    # reported, not a missing grant.
    allowed = {(g, r, v, ns, n) for g, r, v, ns, n, c in ok_events}
    transient = []
    # Designed refusals: the operator writes the agency roles only when they are missing or
    # differ from what its version grants, and its identity may not write ClusterRoles (the
    # chart or the member manifest installs them); the 403 is how it learns that the cluster
    # needs the manifest, and it reports MemberRolesOutdated. Listed, never failed.
    designed = {("rbac.authorization.k8s.io", "clusterroles", verb, "", role)
                for verb in ("apply", "patch", "create")
                for role in ("govcloud-agency-owner", "govcloud-agency-viewer")}
    # tests/tests/member.rs tries, with the member identity itself, what a stolen member token
    # would do; each attempt must be refused (the test checks that), so they are listed here.
    def stolen_token_probe(g, r, v, ns, n):
        return ((r, v) == ("secrets", "list") and ns in ("kube-system", "govcloud-system")) \
            or (n or "").startswith("stolen-") \
            or (r, v) in (("clusterrolebindings", "create"), ("clusterroles", "create"))
    for (g, r, v, ns, n), count in sorted(denied.items()):
        what = f"{v} {r}.{g or 'core'} {ns + '/' if ns else ''}{n}"
        if (g, r, v, ns or "", n) in designed:
            transient.append(f"refused {count}x by design (roles missing or outdated, reported as MemberRolesOutdated): {what}")
        elif stolen_token_probe(g, r, v, ns, n):
            transient.append(f"refused {count}x as it must be (a stolen-token probe of tests/tests/member.rs): {what}")
        elif (g, r, v, ns, n) in allowed:
            transient.append(f"refused {count}x but allowed at other times (API server restarting): {what}")
        else:
            failures.append(f"used but not granted (403 x{count}): {what}")

    rows = []
    for scope, role, rule in rules:
        groups = rule.get("apiGroups") or []
        resources = rule.get("resources") or []
        verbs = rule.get("verbs") or []
        names = rule.get("resourceNames") or []
        if "*" in groups or "*" in resources or "*" in verbs or rule.get("nonResourceURLs"):
            failures.append(f"{role}: wildcard or non-resource rule {rule}")
            continue
        for g in groups:
            for r in resources:
                for v in verbs:
                    def matches(e, verb=v):
                        eg, er, ev, ens, en, _ = e
                        return (
                            eg == g
                            and er == r
                            and (ev == verb or (verb == "patch" and ev == "apply"))
                            and (not scope or ens == scope)
                            and (not names or en in names)
                        )

                    if v == "escalate" and r == "clusterroles":
                        used = sum(1 for e in ok_events if e[0] == g and e[1] == "clusterroles" and e[2] in WRITE_VERBS | {"apply"} and (not names or e[4] in names))
                    elif v == "bind" and r in ("clusterroles", "roles"):
                        used = sum(1 for e in ok_events if e[0] == g and e[1] in ("rolebindings", "clusterrolebindings") and e[2] in ("create", "update", "patch", "apply"))
                    elif v == "create":
                        # Server-side apply creates a missing object (201), authorized as
                        # create too; an apply of an existing one needs the same grant the
                        # first time, so applies count as uses of create.
                        used = sum(1 for e in ok_events if matches(e) or matches(e, "apply") or (matches(e, "patch") and e[5] == 201))
                    else:
                        used = sum(1 for e in ok_events if matches(e))
                    where = f"{scope}" if scope else "cluster"
                    label = f"{v:<16} {r}.{g or 'core'}" + (f" [{', '.join(names)}]" if names else "")
                    rows.append((role, where, label, used))
                    if used == 0 and role not in args.not_minimal:
                        failures.append(f"granted but never used: {role} ({where}): {label}")

    width = max(len(r[2]) for r in rows)
    lines = [f"{'role':<34} {'scope':<16} {'grant':<{width}} requests"]
    for role, where, label, used in rows:
        lines.append(f"{role:<34} {where:<16} {label:<{width}} {used}")
    for role in args.not_minimal:
        lines.append(f"{role}: checked for wildcards and refused requests only (not for unused grants)")
    lines.append("")
    lines.extend(transient)
    lines.append(f"{len(ok_events)} requests of {username} checked against {len(rows)} grants; {sum(denied.values())} refused (403)")
    text = "\n".join(lines)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    if failures:
        print("\ncheck-rbac: FAIL")
        for f in failures:
            print("  - " + f)
        return 1
    print("check-rbac: OK — every grant was used, nothing was refused for want of a grant, no wildcards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
