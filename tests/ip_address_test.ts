import assert from "node:assert/strict";
import { inNetwork, parseIp } from "../src/proxy/ip_address.ts";

Deno.test("parseIp reads IPv4, IPv6 and IPv4-mapped IPv6, and refuses names", () => {
  assert.deepEqual(parseIp("10.1.2.3"), [10, 1, 2, 3]);
  assert.deepEqual(parseIp("::1"), [...Array(15).fill(0), 1]);
  assert.deepEqual(parseIp("fd00::1:2")?.slice(0, 2), [0xfd, 0]);
  assert.deepEqual(parseIp("fd00::1:2")?.slice(12), [0, 1, 0, 2]);
  assert.deepEqual(parseIp("::ffff:1.2.3.4")?.slice(10), [0xff, 0xff, 1, 2, 3, 4]);
  for (const text of ["256.1.1.1", "1.2.3", "example.com", "", "fe80::1%eth0", "1::2::3"]) {
    assert.equal(parseIp(text), undefined, text);
  }
});

Deno.test("inNetwork matches addresses and CIDR prefixes of the same family only", () => {
  const v4 = parseIp("10.1.2.3")!;
  assert.equal(inNetwork(v4, "10.0.0.0/8"), true);
  assert.equal(inNetwork(v4, "10.1.2.3"), true);
  assert.equal(inNetwork(v4, "10.1.2.4"), false);
  assert.equal(inNetwork(v4, "11.0.0.0/8"), false);
  assert.equal(inNetwork(v4, "0.0.0.0/0"), true);
  assert.equal(inNetwork(v4, "10.0.0.0/33"), false);
  assert.equal(inNetwork(v4, "10.0.0.0/x"), false);
  assert.equal(inNetwork(v4, "::/0"), false);
  const v6 = parseIp("fd00::5")!;
  assert.equal(inNetwork(v6, "fd00::/8"), true);
  assert.equal(inNetwork(v6, "fe00::/8"), false);
  assert.equal(inNetwork(v6, "0.0.0.0/0"), false);
});
