/**
 * Global setup of the e2e project: one real livekit-server for the whole run, inside the test
 * network namespace (scripts/in-test-netns.sh). There is no fallback: if the server cannot start,
 * every e2e test fails with the reason.
 */
import type { TestProject } from 'vitest/node';
import { startLiveKitServer } from '../../scripts/livekit-dev-server.js';

export interface ProvidedServer {
  url: string;
  httpUrl: string;
  apiKey: string;
  apiSecret: string;
  version: string;
  logFile: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    livekit: ProvidedServer;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.WT_IN_TEST_NETNS !== '1') {
    throw new Error(
      'End-to-end tests must run inside the test network namespace, so WebRTC never touches a real interface. ' +
        'Run them with `npm test` (or scripts/in-test-netns.sh npx vitest run --project e2e).',
    );
  }
  const nodeIp = process.env.WT_TEST_NODE_IP;
  if (!nodeIp) throw new Error('WT_TEST_NODE_IP is not set; scripts/in-test-netns.sh sets it');
  const server = await startLiveKitServer({ bindAddress: '127.0.0.1', nodeIp });
  process.stderr.write(`[e2e] ${server.version} pid ${server.pid} at ${server.url} (RTC on ${nodeIp}); log ${server.logFile}\n`);
  project.provide('livekit', {
    url: server.url,
    httpUrl: server.httpUrl,
    apiKey: server.apiKey,
    apiSecret: server.apiSecret,
    version: server.version,
    logFile: server.logFile,
  });
  return () => server.stop();
}
