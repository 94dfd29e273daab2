/**
 * The complete example of docs/testing.md, as written there (only the import path differs).
 * Keep the two in step.
 */
import { sandbox, Sandbox } from '../../../apps/testing'

let sb: Sandbox
beforeEach(async () => {
  sb = await sandbox({ tracking: true, sysctls: { 'net.netfilter.nf_conntrack_acct': 1 } })
})
afterEach(() => sb.close())

test('a held TCP connection is one ESTABLISHED, ASSURED entry with counters', async () => {
  const conn = await sb.tcp({ hold: true })
  const [flow] = await sb.ct.list({ proto: 'tcp' })
  expect(flow.orig).toMatchObject({ src: '127.0.0.1', sport: conn.sport, dport: conn.dport })
  expect(flow.state).toBe('ESTABLISHED')
  expect(flow.status).toContain('ASSURED')
  expect(flow.counters!.orig.packets).toBeGreaterThan(0n)
})

test('my cleanup job deletes stale UDP flows to the old backend', async () => {
  await sb.ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.96.0.10', sport: 5353, dport: 53 }, timeout: 120 })
  await sb.udp()                                         // some unrelated real traffic
  const removed = await sb.ct.deleteMatching({ proto: 'udp', orig: { dst: '10.96.0.10' } })
  expect(removed).toBe(1)
  expect((await sb.run('conntrack', ['-L', '-p', 'udp'])).stdout).not.toContain('10.96.0.10')
})

test('a full table drops new connections', async () => {
  await sb.fill('max')                                   // nf_conntrack_max ASSURED entries, about 2 s
  const l = await sb.listen()
  const r = await sb.connect({ port: l.port, timeout: 500 })
  expect(r.timedOut).toBe(true)
  expect((await sb.ct.stats()).total.drop).toBeGreaterThan(0)
})
