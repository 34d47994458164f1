// temporary: which threads of a job process use CPU during an idle text call
import { readFileSync, readdirSync } from 'node:fs';
import { startLiveKitServer } from '../../scripts/livekit-dev-server.js';
import { startRig } from '../support/transfer-rig.js';
const server = await startLiveKitServer({ bindAddress: '127.0.0.1', nodeIp: process.env.WT_TEST_NODE_IP, httpPort: 7950, rtcTcpPort: 7951, rtcUdpPort: 7952 });
const rig = await startRig(server, { WORKER_IDLE_PROCESSES: '1' });
await new Promise((r) => setTimeout(r, 8000));
const { caller } = await rig.startCall('cpu');
function threads(pid: number) {
  const out: Record<string, number> = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[`${t}:${comm}`] = Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return out;
}
function children(pid: number): number[] {
  try { return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number); } catch { return []; }
}
const all = (pid: number): number[] => [pid, ...children(pid).flatMap(all)];
const pids = all(rig.worker.pid);
const before = Object.fromEntries(pids.map((p) => [p, threads(p)]));
await new Promise((r) => setTimeout(r, 20000));
for (const p of pids) {
  const after = threads(p);
  const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').slice(0, 80);
  const rows = Object.entries(after).map(([k, v]) => [k, v - (before[p]?.[k] ?? 0)] as const).filter(([, d]) => d > 0).sort((a, b) => b[1] - a[1]);
  console.log(p, cmd, 'ticks(10ms) in 20s:', rows.reduce((n, [, d]) => n + d, 0), rows.slice(0, 8));
}
void caller;
await rig.close();
await server.stop();
