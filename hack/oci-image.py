#!/usr/bin/env python3
"""Build a one-layer OCI image from files, push it to a registry, write an OCI layout tar.

No container runtime and no third-party modules: the layer is a tar+gzip written by
tarfile/gzip, the push uses the Docker Registry HTTP API v2 with urllib.

The image is deterministic: entries sorted, mtime 0, uid/gid 0 (unless --dir says
otherwise), no user/group names, gzip header with mtime 0 and no file name, JSON with
sorted keys and no "created" time. The same inputs give the same digests.

Examples:
  hack/oci-image.py --ref registry.gov.cn/zj/open-data-web:2.3.1 \\
      --file target/.../govcloud-sample-app:/govcloud-sample-app:0755 \\
      --dir /data:0755:65532:65532 --text /etc/passwd="$(printf 'nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\\n')" \\
      --entrypoint '["/govcloud-sample-app"]' --env APP_NAME=zj/open-data-web --user 65532 \\
      --expose 8080/tcp --push 127.0.0.1:15000 --oci-tar /tmp/open-data-web.tar

The repository in the registry is the reference's path after its host
(registry.gov.cn/zj/open-data-web:2.3.1 -> 127.0.0.1:15000/v2/zj/open-data-web/...),
which is what a containerd registry mirror for registry.gov.cn asks for.

Prints one line per image: reference, manifest digest, total size (manifest + config +
compressed layer) and the compressed layer size; --json prints a JSON object instead.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REF_RE = re.compile(r"^(?P<host>[a-zA-Z0-9.-]+(:[0-9]+)?)/(?P<repo>[a-z0-9]+([._/-][a-z0-9]+)*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def die(msg):
    print(f"oci-image: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_ref(ref):
    m = REF_RE.match(ref)
    if not m:
        die(f"{ref!r}: expected HOST/REPOSITORY:TAG, e.g. registry.gov.cn/zj/open-data-web:2.3.1")
    return m.group("host"), m.group("repo"), m.group("tag")


def clean_dest(dest):
    p = os.path.normpath("/" + dest.strip()).lstrip("/")
    if not p or p == "." or p.startswith(".."):
        die(f"bad destination path {dest!r}")
    return p


# ---------------------------------------------------------------------------
# Layer


class Layer:
    """Collects entries, then writes them sorted into a deterministic tar."""

    def __init__(self):
        self.entries = {}  # path -> (kind, mode, uid, gid, payload)

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            self.entries.setdefault(d, ("dir", 0o755, 0, 0, None))

    def add_file(self, src, dest, mode=None):
        try:
            st = os.stat(src)
        except OSError as e:
            die(f"{src}: {e}")
        if not stat.S_ISREG(st.st_mode):
            die(f"{src}: not a regular file")
        if mode is None:
            mode = 0o755 if st.st_mode & 0o111 else 0o644
        path = clean_dest(dest)
        self._parents(path)
        self.entries[path] = ("file", mode, 0, 0, src)

    def add_text(self, dest, text, mode=0o644):
        path = clean_dest(dest)
        self._parents(path)
        self.entries[path] = ("bytes", mode, 0, 0, text.encode())

    def add_symlink(self, dest, target):
        path = clean_dest(dest)
        self._parents(path)
        self.entries[path] = ("symlink", 0o777, 0, 0, target)

    def add_dir(self, dest, mode=0o755, uid=0, gid=0):
        path = clean_dest(dest)
        self._parents(path)
        self.entries[path] = ("dir", mode, uid, gid, None)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(self.entries):
                kind, mode, uid, gid, payload = self.entries[path]
                ti = tarfile.TarInfo(path)
                ti.mtime = 0
                ti.uid, ti.gid = uid, gid
                ti.uname = ti.gname = ""
                ti.mode = mode
                if kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                elif kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = payload
                    tf.addfile(ti)
                elif kind == "bytes":
                    ti.size = len(payload)
                    tf.addfile(ti, io.BytesIO(payload))
                else:
                    with open(payload, "rb") as f:
                        data = f.read()
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()


def gzip_deterministic(data, level):
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=level) as gz:
        gz.write(data)
    return out.getvalue()


# ---------------------------------------------------------------------------
# Image


def build_image(args, layer):
    raw = layer.tar()
    gz = gzip_deterministic(raw, args.gzip_level)
    env = list(args.env or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    cfg = {}
    if args.user:
        cfg["User"] = args.user
    cfg["Env"] = env
    if args.entrypoint is not None:
        cfg["Entrypoint"] = args.entrypoint
    if args.cmd is not None:
        cfg["Cmd"] = args.cmd
    cfg["WorkingDir"] = args.workdir
    if args.expose:
        cfg["ExposedPorts"] = {p if "/" in p else p + "/tcp": {} for p in args.expose}
    if args.label:
        cfg["Labels"] = dict(kv.split("=", 1) for kv in args.label)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]},
        "history": [{"created_by": "hack/oci-image.py", "comment": args.comment or ""}],
    }
    config_bytes = canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha256(gz), "size": len(gz)}],
    }
    manifest_bytes = canonical_json(manifest)
    return {
        "manifest": manifest_bytes,
        "config": config_bytes,
        "layer": gz,
        "layer_uncompressed": len(raw),
    }


# ---------------------------------------------------------------------------
# Registry (Docker Registry HTTP API v2)


class Registry:
    def __init__(self, base):
        if "://" not in base:
            base = "http://" + base
        self.base = base.rstrip("/")
        # Never through a proxy: the registry is on 127.0.0.1.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method, url, data=None, headers=None, ok=(200,)):
        """Returns (status, headers); dies on any status not in ok."""
        if url.startswith("/"):
            url = self.base + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=120) as resp:
                resp.read()
                status, hdrs = resp.status, resp.headers
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e.code, e.headers
            body = e.read().decode(errors="replace")[:500]
            die(f"{method} {url}: HTTP {e.code}: {body}")
        except urllib.error.URLError as e:
            die(f"{method} {url}: {e.reason}")
        if status not in ok:
            die(f"{method} {url}: HTTP {status}")
        return status, hdrs

    def blob_exists(self, repo, digest):
        status, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404))
        return status == 200

    def push_blob(self, repo, data):
        digest = sha256(data)
        if self.blob_exists(repo, digest):
            return digest, False
        _, hdrs = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", data=b"", headers={"Content-Length": "0"}, ok=(202,)
        )
        location = hdrs.get("Location")
        if not location:
            die(f"POST /v2/{repo}/blobs/uploads/: no Location header")
        url = urllib.parse.urljoin(self.base + f"/v2/{repo}/blobs/uploads/", location)
        url += ("&" if "?" in url else "?") + "digest=" + urllib.parse.quote(digest, safe=":")
        self.request(
            "PUT",
            url,
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            ok=(201,),
        )
        return digest, True

    def push_manifest(self, repo, tag, manifest_bytes):
        _, hdrs = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            data=manifest_bytes,
            headers={"Content-Type": MT_MANIFEST},
            ok=(201,),
        )
        got = hdrs.get("Docker-Content-Digest")
        want = sha256(manifest_bytes)
        if got and got != want:
            die(f"registry stored manifest {got}, expected {want}")
        return want


# ---------------------------------------------------------------------------
# OCI layout tar (for "ctr images import")


def write_oci_tar(path, ref, tag, image):
    manifest_digest = sha256(image["manifest"])
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": manifest_digest,
                "size": len(image["manifest"]),
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical_json(index),
    }
    for blob in (image["manifest"], image["config"], image["layer"]):
        files["blobs/sha256/" + sha256(blob).split(":", 1)[1]] = blob
    dirs = {"blobs", "blobs/sha256"}
    tmp = path + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(dirs | set(files)):
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.uname = ti.gname = ""
            if name in dirs:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.mode = 0o644
                ti.size = len(files[name])
                tf.addfile(ti, io.BytesIO(files[name]))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------


def json_list(value):
    try:
        v = json.loads(value)
    except json.JSONDecodeError:
        v = None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise argparse.ArgumentTypeError(f"expected a JSON list of strings, e.g. '[\"/app\", \"serve\"]', got {value!r}")
    return v


def octal(s):
    try:
        return int(s, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad octal mode {s!r}")


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--ref", required=True, help="HOST/REPOSITORY:TAG, e.g. registry.gov.cn/zj/open-data-web:2.3.1")
    p.add_argument("--file", action="append", default=[], metavar="SRC:DEST[:MODE]", help="add a regular file")
    p.add_argument("--text", action="append", default=[], metavar="DEST=CONTENT", help="add a file with this content (0644)")
    p.add_argument("--symlink", action="append", default=[], metavar="DEST:TARGET", help="add a symbolic link")
    p.add_argument("--dir", action="append", default=[], metavar="DEST[:MODE[:UID[:GID]]]", help="add a directory")
    p.add_argument("--entrypoint", type=json_list, help="JSON list")
    p.add_argument("--cmd", type=json_list, help="JSON list")
    p.add_argument("--env", action="append", metavar="K=V")
    p.add_argument("--user", help="e.g. 65532 or 65532:65532")
    p.add_argument("--workdir", default="/")
    p.add_argument("--expose", action="append", metavar="PORT[/PROTO]")
    p.add_argument("--label", action="append", metavar="K=V")
    p.add_argument("--comment", help="history comment in the config")
    p.add_argument("--gzip-level", type=int, default=6)
    p.add_argument("--push", metavar="REGISTRY", help="host:port or http://host:port of a registry to push to")
    p.add_argument("--oci-tar", metavar="FILE", help="write an OCI image layout tar (ctr images import)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    args = p.parse_args()

    _host, repo, tag = parse_ref(args.ref)
    for e in args.env or []:
        if "=" not in e:
            die(f"--env {e!r}: expected K=V")
    for kv in args.label or []:
        if "=" not in kv:
            die(f"--label {kv!r}: expected K=V")

    layer = Layer()
    for d in args.dir:
        parts = d.split(":")
        if len(parts) > 4:
            die(f"--dir {d!r}: expected DEST[:MODE[:UID[:GID]]]")
        mode = octal(parts[1]) if len(parts) > 1 else 0o755
        uid = int(parts[2]) if len(parts) > 2 else 0
        gid = int(parts[3]) if len(parts) > 3 else uid
        layer.add_dir(parts[0], mode, uid, gid)
    for f in args.file:
        parts = f.split(":")
        if len(parts) not in (2, 3):
            die(f"--file {f!r}: expected SRC:DEST[:MODE]")
        layer.add_file(parts[0], parts[1], octal(parts[2]) if len(parts) == 3 else None)
    for t in args.text:
        dest, sep, content = t.partition("=")
        if not sep:
            die(f"--text {t!r}: expected DEST=CONTENT")
        layer.add_text(dest, content)
    for s in args.symlink:
        dest, sep, target = s.partition(":")
        if not sep or not target:
            die(f"--symlink {s!r}: expected DEST:TARGET")
        layer.add_symlink(dest, target)
    if not layer.entries:
        die("the image would be empty: add --file, --text, --symlink or --dir")

    image = build_image(args, layer)
    manifest_digest = sha256(image["manifest"])
    total = len(image["manifest"]) + len(image["config"]) + len(image["layer"])
    uploaded = []
    if args.push:
        reg = Registry(args.push)
        for name in ("layer", "config"):
            _d, up = reg.push_blob(repo, image[name])
            if up:
                uploaded.append(name)
        reg.push_manifest(repo, tag, image["manifest"])
    if args.oci_tar:
        write_oci_tar(args.oci_tar, args.ref, tag, image)

    summary = {
        "ref": args.ref,
        "repository": repo,
        "tag": tag,
        "digest": manifest_digest,
        "size": total,
        "layer_size": len(image["layer"]),
        "layer_uncompressed": image["layer_uncompressed"],
        "layer_digest": sha256(image["layer"]),
        "config_digest": sha256(image["config"]),
        "pushed_to": args.push,
        "uploaded": uploaded,
        "oci_tar": args.oci_tar,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        where = f" -> {args.push}/v2/{repo}" if args.push else ""
        print(
            f"{args.ref} {manifest_digest} size={total} layer={len(image['layer'])} "
            f"(uncompressed {image['layer_uncompressed']}){where}"
            + (f" uploaded={','.join(uploaded) or 'none (all blobs present)'}" if args.push else "")
        )


if __name__ == "__main__":
    main()
