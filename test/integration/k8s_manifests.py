#!/usr/bin/env python3
"""Reads deploy/kubernetes/*.yaml for t_k8s_manifests.sh.

usage: k8s_manifests.py DIR check          structural checks; one line per problem, exit 1
       k8s_manifests.py DIR conf           the ConfigMap's mows.conf
       k8s_manifests.py DIR argv|probe|prestop
                                           the DaemonSet container's command + args, readiness
                                           probe or preStop command, NUL-separated
       k8s_manifests.py DIR get KEY        a value: mountpoint, mnt_path, backing_path,
                                           config_path, secret_path, limit_bytes, overhead_bytes
"""
import glob
import os
import re
import sys

import yaml

UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
K8S_UNITS = {'Ki': 1 << 10, 'Mi': 1 << 20, 'Gi': 1 << 30, 'Ti': 1 << 40, '': 1}


def load(d):
    docs = {}
    for f in sorted(glob.glob(os.path.join(d, '*.yaml'))):
        with open(f, encoding='utf-8') as fp:
            for doc in yaml.safe_load_all(fp):
                if doc is None:
                    continue
                for k in ('apiVersion', 'kind', 'metadata'):
                    if k not in doc:
                        sys.exit(f'{f}: a document without {k}')
                docs.setdefault(doc['kind'], []).append(doc)
    return docs


def one(docs, kind):
    if len(docs.get(kind, [])) != 1:
        sys.exit(f'expected one {kind}, found {len(docs.get(kind, []))}')
    return docs[kind][0]


def conf_values(text):
    vals = {}
    for line in text.splitlines():
        m = re.match(r'^([A-Za-z_][\w-]*)\s*=\s*(.*?)\s*$', line)
        if m:
            vals[m.group(1)] = m.group(2)
    return vals


def mows_size(s):
    m = re.fullmatch(r'(\d+)([KMGT]?)(i?B)?', s)
    return int(m.group(1)) * UNITS[m.group(2)]


def k8s_size(s):
    m = re.fullmatch(r'(\d+)(Ki|Mi|Gi|Ti|)', str(s))
    return int(m.group(1)) * K8S_UNITS[m.group(2)]


class Manifests:
    def __init__(self, d):
        self.docs = load(d)
        self.ds = one(self.docs, 'DaemonSet')
        self.cm = one(self.docs, 'ConfigMap')
        self.svc = one(self.docs, 'Service')
        self.secret = one(self.docs, 'Secret')
        self.vllm = one(self.docs, 'Deployment')
        self.pod = self.ds['spec']['template']['spec']
        self.c = self.pod['containers'][0]
        self.conf = self.cm['data']['mows.conf']
        self.vals = conf_values(self.conf)
        self.mounts = {m['name']: m for m in self.c['volumeMounts']}
        self.vols = {v['name']: v for v in self.pod['volumes']}

    def argv(self):
        return list(self.c.get('command', [])) + list(self.c.get('args', []))

    def args(self):
        return list(self.c['args'])

    def mountpoint(self):
        return self.args()[-1]

    def flag(self, name):
        a = self.args()
        return a[a.index(name) + 1] if name in a else None

    def mount_of(self, path):
        """The volumeMount whose mountPath holds @path (longest match)."""
        best = None
        for m in self.c['volumeMounts']:
            p = m['mountPath'].rstrip('/')
            if (path == p or path.startswith(p + '/')) and (not best or len(p) > len(best['mountPath'])):
                best = m
        return best

    def get(self, key):
        if key == 'mountpoint':
            return self.mountpoint()
        if key == 'mnt_path':
            return self.mount_of(self.mountpoint())['mountPath']
        if key == 'backing_path':
            return self.flag('--backing')
        if key == 'config_path':
            return self.flag('-c')
        if key == 'secret_path':
            return self.vals['secret_file']
        if key == 'limit_bytes':
            return k8s_size(self.c['resources']['limits']['memory'])
        if key == 'overhead_bytes':
            return k8s_size(self.c['resources']['limits']['memory']) - mows_size(self.vals['max_memory'])
        sys.exit(f'unknown key {key}')

    def check(self):
        bad = []
        c, mp = self.c, self.mountpoint()
        if not c.get('securityContext', {}).get('privileged'):
            bad.append('DaemonSet: the container is not privileged (FUSE and Bidirectional need it)')
        fuse = [v for v in self.pod['volumes'] if v.get('hostPath', {}).get('path') == '/dev/fuse']
        if not fuse or fuse[0]['hostPath'].get('type') != 'CharDevice':
            bad.append('DaemonSet: no hostPath /dev/fuse of type CharDevice')
        m = self.mount_of(mp)
        if not m or m.get('mountPropagation') != 'Bidirectional':
            bad.append(f'DaemonSet: the mountpoint {mp} is not under a Bidirectional volumeMount')
        elif m['mountPath'] == mp:
            bad.append(f'DaemonSet: mows mounts on the volume root {mp}; use a subdirectory so '
                       'remounts propagate to readers')
        hp = self.vols[m['name']].get('hostPath', {}).get('path') if m else None
        # vLLM: the same host directory, HostToContainer, and it reads under the mount.
        vpod = self.vllm['spec']['template']['spec']
        vvols = {v['name']: v for v in vpod['volumes']}
        seen = False
        for cont in vpod.get('initContainers', []) + vpod['containers']:
            for vm in cont.get('volumeMounts', []):
                if vvols[vm['name']].get('hostPath', {}).get('path') == hp:
                    seen = True
                    if vm.get('mountPropagation') != 'HostToContainer':
                        bad.append(f'Deployment {cont["name"]}: {vm["mountPath"]} is not HostToContainer')
        if not seen:
            bad.append(f'Deployment: no container mounts the host directory {hp}')
        # Memory: request = limit = max_memory + overhead.
        res = c.get('resources', {})
        lim, req = res.get('limits', {}).get('memory'), res.get('requests', {}).get('memory')
        if not lim or lim != req:
            bad.append(f'DaemonSet: memory request {req} and limit {lim} should be set and equal')
        else:
            over = self.get('overhead_bytes')
            if not (256 << 20) <= over <= (2 << 30):
                bad.append(f'DaemonSet: memory limit {lim} is max_memory {self.vals["max_memory"]} '
                           f'+ {over >> 20} MiB; expected + 256Mi to 2Gi')
        probe = c.get('readinessProbe', {}).get('exec', {}).get('command', [])
        if 'mowsctl' not in probe or 'status' not in probe:
            bad.append(f'DaemonSet: readiness probe {probe} is not mowsctl ... status')
        if c.get('livenessProbe'):
            bad.append('DaemonSet: a liveness probe would restart the daemon and break the mount')
        pre = c.get('lifecycle', {}).get('preStop', {}).get('exec', {}).get('command', [])
        if not pre or 'fusermount3' not in pre[0] or pre[-1] != mp:
            bad.append(f'DaemonSet: preStop {pre} does not unmount {mp}')
        if 'ulimit -l unlimited' not in ' '.join(self.c.get('command', [])):
            bad.append('DaemonSet: the command does not raise the memlock limit (ulimit -l unlimited)')
        # Peers through the headless Service.
        if self.svc['spec'].get('clusterIP') != 'None':
            bad.append('Service: not headless (clusterIP: None)')
        sel = self.svc['spec']['selector']
        labels = self.ds['spec']['template']['metadata']['labels']
        if any(labels.get(k) != v for k, v in sel.items()):
            bad.append('Service: its selector does not match the DaemonSet pods')
        ns = self.svc['metadata'].get('namespace', 'default')
        port = str(self.svc['spec']['ports'][0]['port'])
        want = f'{self.svc["metadata"]["name"]}.{ns}.svc'
        peers = self.vals.get('peers', '')
        if not peers.startswith(want) or not peers.endswith(':' + port):
            bad.append(f'ConfigMap: peers {peers!r} is not the headless Service {want}...:{port}')
        listen = self.vals.get('listen', '')
        if not listen.endswith(':' + port):
            bad.append(f'ConfigMap: listen {listen!r} is not on the Service port {port}')
        # The secret file comes from the Secret, readable by its owner only.
        sp = self.vals.get('secret_file', '')
        sm = self.mount_of(sp)
        sv = self.vols.get(sm['name']) if sm else None
        if not sv or sv.get('secret', {}).get('secretName') != self.secret['metadata']['name']:
            bad.append(f'ConfigMap: secret_file {sp} is not in the mows Secret volume')
        else:
            if sv['secret'].get('defaultMode') not in (0o400, 0o600):
                bad.append(f'DaemonSet: secret volume mode {sv["secret"].get("defaultMode")} is '
                           'not 0400/0600; mows refuses a secret others can read')
            key = os.path.relpath(sp, sm['mountPath'])
            if key not in self.secret.get('stringData', {}) and key not in self.secret.get('data', {}):
                bad.append(f'Secret: no key {key!r} for secret_file {sp}')
        cp = self.flag('-c')
        cm = self.mount_of(cp)
        if not cm or self.vols[cm['name']].get('configMap', {}).get('name') != self.cm['metadata']['name']:
            bad.append(f'DaemonSet: -c {cp} is not the mows ConfigMap')
        return bad


def main():
    d, what = sys.argv[1], sys.argv[2]
    m = Manifests(d)
    if what == 'check':
        bad = m.check()
        for b in bad:
            print(b)
        return 1 if bad else 0
    if what == 'conf':
        sys.stdout.write(m.conf)
    elif what in ('argv', 'probe', 'prestop'):
        items = {'argv': m.argv,
                 'probe': lambda: m.c['readinessProbe']['exec']['command'],
                 'prestop': lambda: m.c['lifecycle']['preStop']['exec']['command']}[what]()
        sys.stdout.write(''.join(str(x) + '\0' for x in items))
    elif what == 'get':
        print(m.get(sys.argv[3]))
    else:
        sys.exit(f'unknown command {what}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
