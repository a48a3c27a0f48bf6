"""Start fakepve (PyPI `fakepve`, pinned in .ci/run) for the conformance suite.

    python launch.py SCENARIO.json REJECTIONS.jsonl

Listens on 127.0.0.1 on a free port with a fresh self-signed certificate, registers the API
token the scenario names, adds its containers and storage volumes, applies its faults, and
prints one JSON line on stdout: {"port": N, "fingerprint": "AA:BB:..."} (SHA-256 of the
certificate). Every request fakepve rejects with PVE's "Parameter verification failed." (its
schema validation) is appended to REJECTIONS.jsonl as one JSON object per line, so the Rust
suite can assert there are none. The process runs until it is killed.
"""

import asyncio
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time

from aiohttp import web
from fakepve import FakePve
from fakepve.certs import make_cert
from fakepve.server import params

REJECTION = 'Parameter verification failed.'


class RecordingPve(FakePve):
    """FakePve that writes every schema rejection (HTTP 400, PVE's wording) to a file."""

    def __init__(self, rejections, **kwargs):
        super().__init__(**kwargs)
        self.rejections = rejections

    async def _answer(self, request, handler, generic, path_node):
        response = await super()._answer(request, handler, generic, path_node)
        if getattr(response, 'status', None) == 400:
            try:
                body = json.loads(response.text)
            except (TypeError, ValueError):
                body = {}
            if body.get('message', '').startswith(REJECTION):
                entry = {'method': request.method, 'path': request.path, 'query': request.query_string,
                         'errors': body.get('errors')}
                with open(self.rejections, 'a') as out:
                    out.write(json.dumps(entry) + '\n')
        if (request.method == 'GET' and re.search(r'/nodes/[^/]+/status$', request.path)
                and getattr(response, 'status', 0) == 200):
            response = self._node_status_shim(response)
        if request.method == 'POST' and request.path.endswith('/vzdump') and getattr(response, 'status', 0) == 200:
            await self._vzdump_archive(request)
        return response

    @staticmethod
    def _node_status_shim(response):
        """SHIM: fakepve 0.5.0 synthesises /nodes/{node}/status from the schema, with
        `loadavg: ["fake"]`; PVE sends the three load averages as strings (pve-manager
        PVE/API2/Nodes.pm, status: `loadavg => [ map { ... } @loadavg ]`)."""
        body = json.loads(response.text)
        data = body.get('data')
        if isinstance(data, dict) and data.get('loadavg') == ['fake']:
            data['loadavg'] = ['0.10', '0.20', '0.30']
            return web.json_response(body)
        return response

    def _item(self, name, volname, vol):
        """SHIM: fakepve 0.5.0's storage content listing has no `subtype`; PVE sets it for a
        backup from its archive name (pve-storage PVE/Storage/Plugin.pm, list_volumes via
        archive_info: vzdump-lxc-… is lxc, vzdump-qemu-… qemu, vzdump-openvz-… openvz)."""
        item = super()._item(name, volname, vol)
        found = re.match(r'^backup/vzdump-(lxc|qemu|openvz)-', volname)
        if vol.get('content') == 'backup' and found:
            item.setdefault('subtype', found.group(1))
        return item

    async def _vzdump_archive(self, request):
        """SHIM: fakepve 0.5.0's vzdump is a no-op task. Put the archive PVE would have written
        on the target storage (vzdump-lxc-VMID-YYYY_MM_DD-HH_MM_SS.tar.zst, local time, as
        PVE/VZDump.pm names it), owned by the guest, so the agent can confirm it."""
        p = await params(request)
        storage, vmid = p.get('storage'), p.get('vmid')
        if storage not in self.storages or not str(vmid or '').isdigit():
            return
        name = 'vzdump-lxc-{0}-{1}.tar.zst'.format(vmid, time.strftime('%Y_%m_%d-%H_%M_%S'))
        self.store_file(storage, name, 2 * 1024 ** 2, content='backup')
        self.storages[storage]['volumes']['backup/' + name]['vmid'] = int(vmid)


async def main(scenario_path, rejections):
    with open(scenario_path) as f:
        sc = json.load(f)
    open(rejections, 'w').close()
    pve = RecordingPve(rejections, user='root@pam', password=sc['password'], host='127.0.0.1', port=0)
    pve.nodes = {sc.get('node', 'pve1'): {'online': True}}
    pve.time_scale = sc.get('time_scale', 0.0)
    pve.apitokens[sc['token_id']] = sc['token_secret']
    for ct in sc.get('containers', []):
        guest = pve.add_ct(ct['vmid'], ct.get('name'), node=ct.get('node', 'pve1'),
                           status=ct.get('status', 'stopped'), config=ct.get('config', {}),
                           lock=ct.get('lock'))
        for key in ('shutdown_secs', 'start_secs', 'stop_secs', 'start_error', 'ha_state'):
            if key in ct:
                setattr(guest, key, ct[key])
    for vol in sc.get('volumes', []):
        pve.store_file(vol['storage'], vol['name'], vol['size'], content=vol['content'])
        # store_file leaves out the owner; PVE's listing has the vmid of a vzdump archive
        # (pve-storage PVE/Storage/Plugin.pm, list_volumes via parse_volname).
        if 'vmid' in vol:
            pve.storages[vol['storage']]['volumes']['{0}/{1}'.format(vol['content'], vol['name'])]['vmid'] = vol['vmid']
    for node in sc.get('offline_nodes', []):
        pve.add_node(node, online=False)
    if sc.get('lose_quorum'):
        pve.lose_quorum()
    for f in sc.get('fail', []):
        pve.fail(f['method'], f['suffix'], status=f.get('status'), message=f.get('message'),
                 error=f.get('error'), times=f.get('times'))
    if sc.get('flaky'):
        pve.flaky_network(**sc['flaky'])
    if sc.get('acl') is not None:
        pve.acl = {}
        for user, path, privs in sc['acl']:
            pve.grant(user, path, *privs)
    tmp = tempfile.mkdtemp(prefix='fakepve-')
    certfile, keyfile, der = make_cert(tmp, hosts=('127.0.0.1',))
    try:
        await pve.start(certfile, keyfile)
    finally:
        # The key is loaded; the child is ended with SIGKILL, so nothing may wait for exit.
        shutil.rmtree(tmp, ignore_errors=True)
    digest = hashlib.sha256(der).hexdigest().upper()
    fingerprint = ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))
    print(json.dumps({'port': pve.port, 'fingerprint': fingerprint}), flush=True)
    await asyncio.Event().wait()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], sys.argv[2]))
