/**
 * Hand-written, not node:net: a node: import on the steady `run` path loads Deno's Node layer.
 * IPv4/IPv6 addresses and CIDR networks as bytes, for `NO_PROXY` lists and OS bypass lists.
 */

/** The bytes of an IPv4 or IPv6 address, or undefined when `text` is not one. */
export function parseIp(text: string): number[] | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) {
    const parts = text.split(".").map(Number);
    return parts.every((p) => p <= 255) ? parts : undefined;
  }
  if (!text.includes(":")) return undefined;
  try {
    // The URL parser normalises IPv6 text, which makes expanding it straightforward.
    const normal = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    const [head = "", tail] = normal.split("::");
    const headGroups = head === "" ? [] : head.split(":");
    const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
    const groups = tail === undefined ? headGroups : [
      ...headGroups,
      ...Array(8 - headGroups.length - tailGroups.length).fill("0"),
      ...tailGroups,
    ];
    const bytes: number[] = [];
    for (const group of groups) {
      if (group.includes(".")) {
        bytes.push(...group.split(".").map(Number));
      } else {
        const n = parseInt(group, 16);
        bytes.push(n >> 8, n & 0xff);
      }
    }
    return bytes.length === 16 ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the first `prefix` bits of two addresses agree. */
function prefixMatches(a: number[], b: number[], prefix: number): boolean {
  if (prefix < 0 || prefix > a.length * 8) return false;
  for (let bit = 0; bit < prefix; bit++) {
    const mask = 0x80 >> (bit % 8);
    if (((a[bit >> 3] ?? 0) & mask) !== ((b[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * Whether the address `ip` (bytes from {@linkcode parseIp}) lies in `network`: an address, or an
 * address with a `/prefix` (CIDR) of the same family.
 */
export function inNetwork(ip: number[], network: string): boolean {
  const [addr = "", bits] = network.split("/");
  const networkIp = parseIp(addr);
  if (!networkIp || networkIp.length !== ip.length) return false;
  const prefix = bits === undefined ? networkIp.length * 8 : Number(bits);
  return Number.isInteger(prefix) && prefixMatches(ip, networkIp, prefix);
}
