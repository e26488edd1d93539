#!/usr/bin/env python3
"""oci-pack.py: build an image archive from a root filesystem, without Docker or a registry.

Python 3 standard library only. Output is deterministic: every tar entry has mtime 0, entries are
sorted, uname/gname are empty, and the image config has a fixed creation date. The same inputs
always give the same image digest.

Formats (--format):
  oci     tar of an OCI image layout (oci-layout, index.json, blobs/sha256/...). Each --name becomes
          one index entry annotated with `io.containerd.image.name` (full name) and
          `org.opencontainers.image.ref.name` (tag), so `ctr -n k8s.io images import x.tar`,
          `kind load image-archive x.tar` and Docker >= 25 `docker load` name the image correctly.
  docker  the same OCI layout plus `manifest.json` and `repositories` (what `docker save` writes
          since Docker 25), so both the legacy `docker load` path (any Docker version) and the OCI
          path work.

Examples:
  oci-pack.py --layer rootfs/ --name registry.k8s.io/pause:3.10 --entrypoint '["/pause"]' -o pause.oci.tar
  oci-pack.py --layer rootfs.tar --name localhost/x:y --env PATH=/bin --cmd '["/bin/sh"]' \
      --expose 2376/tcp --volume /var/lib/docker --format docker -o x.docker.tar

A --layer is a directory (its contents become the layer root) or a tarball (optionally gzip, xz or bz2;
its entries are re-sorted and normalised). Several --layer options make several layers, in order.
"""

import argparse
import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = "1970-01-01T00:00:00Z"
BUF = 1 << 20


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(BUF)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def excluded(rel, patterns):
    # rel is "./a/b"; patterns are matched against "/a/b" (leading slash, like an absolute path).
    p = "/" + rel[2:] if rel.startswith("./") else "/" + rel.lstrip("/")
    return any(fnmatch.fnmatchcase(p, pat) for pat in patterns)


def norm(ti):
    ti.mtime = 0
    ti.uname = ""
    ti.gname = ""
    ti.pax_headers = {}
    return ti


def layer_from_dir(src, out, excludes):
    """Write src's contents as a tar to the binary file `out` (sorted, mtime 0, owners kept)."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        inodes = {}

        def add(path, arc):
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                return
            ti = tf.gettarinfo(path, arcname=arc)
            if ti is None:
                return
            # Hard links: first occurrence (in sorted order) is the file, later ones link to it.
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in inodes:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = inodes[key]
                    ti.size = 0
                else:
                    inodes[key] = arc
                    ti.type = tarfile.REGTYPE
            norm(ti)
            if ti.isreg():
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)

        def walk(d, rel):
            for name in sorted(os.listdir(d)):
                p = os.path.join(d, name)
                r = rel + "/" + name
                if excluded(r, excludes):
                    continue
                add(p, r)
                if os.path.isdir(p) and not os.path.islink(p):
                    walk(p, r)

        walk(src, ".")


def layer_from_tar(src, out, excludes):
    """Re-write a tarball sorted and normalised (mtime 0, no owner names)."""
    with tarfile.open(src, "r:*") as inp, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        members = []
        for m in inp.getmembers():
            name = m.name
            if name in (".", "./", ""):
                continue
            if not name.startswith("./"):
                name = "./" + name.lstrip("/")
            if excluded(name, excludes):
                continue
            members.append((name.rstrip("/"), m))
        members.sort(key=lambda x: x[0])
        for name, m in members:
            ti = norm(tarfile.TarInfo(name))
            ti.mode, ti.uid, ti.gid, ti.type, ti.size = m.mode, m.uid, m.gid, m.type, m.size
            ti.devmajor, ti.devminor = m.devmajor, m.devminor
            ti.linkname = m.linkname
            if m.islnk() and not ti.linkname.startswith("./"):
                ti.linkname = "./" + ti.linkname.lstrip("/")
            if m.isreg():
                tf.addfile(ti, inp.extractfile(m))
            else:
                ti.size = 0
                tf.addfile(ti)


class Blobs:
    def __init__(self, tmpdir):
        self.dir = os.path.join(tmpdir, "blobs")
        os.makedirs(self.dir)
        self.files = {}  # digest hex -> path

    def add_bytes(self, data):
        hx = hashlib.sha256(data).hexdigest()
        p = os.path.join(self.dir, hx)
        with open(p, "wb") as f:
            f.write(data)
        self.files[hx] = p
        return hx, len(data)

    def add_file(self, path):
        hx = sha256_file(path)
        p = os.path.join(self.dir, hx)
        os.replace(path, p)
        self.files[hx] = p
        return hx, os.path.getsize(p)


def jdump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def parse_list(v):
    if v is None:
        return None
    v = v.strip()
    if v.startswith("["):
        r = json.loads(v)
        if not isinstance(r, list) or not all(isinstance(x, str) for x in r):
            raise SystemExit("oci-pack: expected a JSON list of strings: %r" % v)
        return r
    return [v] if v else []


def split_name(name):
    """'registry.k8s.io/pause:3.10' -> ('registry.k8s.io/pause', '3.10')."""
    if "@" in name:
        raise SystemExit("oci-pack: digests are not allowed in --name: %s" % name)
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


def add_tar_entry(tf, arcname, path=None, data=None, isdir=False):
    ti = tarfile.TarInfo(arcname)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    if isdir:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        tf.addfile(ti)
    elif data is not None:
        ti.mode = 0o644
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        ti.mode = 0o644
        ti.size = os.path.getsize(path)
        with open(path, "rb") as f:
            tf.addfile(ti, f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", required=True, help="output .tar")
    ap.add_argument("--name", action="append", required=True, help="full image name (repeatable)")
    ap.add_argument("--layer", action="append", required=True, help="rootfs directory or tarball (repeatable)")
    ap.add_argument("--exclude", action="append", default=[],
                    help="glob on the in-image path, e.g. '/dev/*' (repeatable; a match also skips a dir's contents)")
    ap.add_argument("--entrypoint", help='JSON list, e.g. \'["/pause"]\' (a plain string = one element)')
    ap.add_argument("--cmd", help="JSON list (a plain string = one element)")
    ap.add_argument("--env", action="append", default=[], help="K=V (repeatable)")
    ap.add_argument("--workdir")
    ap.add_argument("--user")
    ap.add_argument("--expose", action="append", default=[], help="port[/proto] (repeatable)")
    ap.add_argument("--volume", action="append", default=[], help="path (repeatable)")
    ap.add_argument("--label", action="append", default=[], help="k=v (repeatable)")
    ap.add_argument("--stop-signal")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--format", choices=("oci", "docker"), default="oci")
    ap.add_argument("--gzip", type=int, default=0, metavar="LEVEL",
                    help="gzip layers at this level (1-9); 0 (default) = uncompressed layers")
    a = ap.parse_args(argv)

    out = os.path.abspath(a.output)
    tmp = tempfile.mkdtemp(prefix=".oci-pack.", dir=os.path.dirname(out))
    try:
        blobs = Blobs(tmp)
        layers, diff_ids, history = [], [], []
        for i, src in enumerate(a.layer):
            raw = os.path.join(tmp, "layer%d.tar" % i)
            with open(raw, "wb") as f:
                if os.path.isdir(src):
                    layer_from_dir(src, f, a.exclude)
                else:
                    layer_from_tar(src, f, a.exclude)
            diff = sha256_file(raw)
            if a.gzip:
                gz = raw + ".gz"
                with open(raw, "rb") as fi, open(gz, "wb") as fo:
                    # mtime=0 and no file name in the header: deterministic output.
                    with gzip.GzipFile(filename="", mode="wb", fileobj=fo, mtime=0, compresslevel=a.gzip) as z:
                        shutil.copyfileobj(fi, z, BUF)
                os.unlink(raw)
                hx, size = blobs.add_file(gz)
                mt = OCI_LAYER_GZ
            else:
                hx, size = blobs.add_file(raw)
                mt = OCI_LAYER
            layers.append({"mediaType": mt, "digest": "sha256:" + hx, "size": size})
            diff_ids.append("sha256:" + diff)
            history.append({"created": EPOCH, "created_by": "oci-pack.py layer %d" % i})

        cfg = {}
        if a.entrypoint is not None:
            cfg["Entrypoint"] = parse_list(a.entrypoint)
        if a.cmd is not None:
            cfg["Cmd"] = parse_list(a.cmd)
        if a.env:
            cfg["Env"] = a.env
        if a.workdir:
            cfg["WorkingDir"] = a.workdir
        if a.user:
            cfg["User"] = a.user
        if a.expose:
            cfg["ExposedPorts"] = {(p if "/" in p else p + "/tcp"): {} for p in a.expose}
        if a.volume:
            cfg["Volumes"] = {v: {} for v in a.volume}
        if a.label:
            cfg["Labels"] = dict(kv.split("=", 1) for kv in a.label)
        if a.stop_signal:
            cfg["StopSignal"] = a.stop_signal
        config = {
            "architecture": a.arch,
            "os": "linux",
            "created": EPOCH,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        chx, csize = blobs.add_bytes(jdump(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + chx, "size": csize},
            "layers": layers,
        }
        mhx, msize = blobs.add_bytes(jdump(manifest))
        entries = []
        for n in a.name:
            _, tag = split_name(n)
            entries.append({
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + mhx,
                "size": msize,
                "platform": {"architecture": a.arch, "os": "linux"},
                "annotations": {"io.containerd.image.name": n, "org.opencontainers.image.ref.name": tag},
            })
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}

        files = {"oci-layout": jdump({"imageLayoutVersion": "1.0.0"}), "index.json": jdump(index)}
        if a.format == "docker":
            files["manifest.json"] = jdump([{
                "Config": "blobs/sha256/" + chx,
                "RepoTags": list(a.name),
                "Layers": ["blobs/sha256/" + l["digest"][7:] for l in layers],
            }])
            repos = {}
            for n in a.name:
                r, t = split_name(n)
                repos.setdefault(r, {})[t] = diff_ids[-1][7:]
            files["repositories"] = jdump(repos)

        part = out + ".part"
        with open(part, "wb") as fo, tarfile.open(fileobj=fo, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            add_tar_entry(tf, "blobs", isdir=True)
            add_tar_entry(tf, "blobs/sha256", isdir=True)
            for hx in sorted(blobs.files):
                add_tar_entry(tf, "blobs/sha256/" + hx, path=blobs.files[hx])
            for name in sorted(files):
                add_tar_entry(tf, name, data=files[name])
        os.replace(part, out)
        print("oci-pack: %s -> %s (manifest sha256:%s, %d layer(s), %d bytes)"
              % (", ".join(a.name), out, mhx, len(layers), os.path.getsize(out)), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
