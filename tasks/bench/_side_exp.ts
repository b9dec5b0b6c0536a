// usage: side.ts seconds variant=path ...   (path = agent entry; "floor" = bench floor)
import { startDevPlatform } from "../dev_platform/server.ts";
import { enrollAgent, FLOOR, spawnScript } from "../bench/processes.ts";
const [secs, ...variants] = Deno.args;
await using platform = await startDevPlatform({ quiet: true });
const root = await Deno.makeTempDir();
const kids: [string, Deno.ChildProcess][] = [];
for (const v of variants) {
  const [name, path] = v.split("=");
  if (path === "floor") { kids.push([name!, spawnScript(FLOOR, [platform.url.href, platform.caFile])]); continue; }
  const dir = `${root}/${name}`;
  await enrollAgent(dir, platform);
  kids.push([name!, spawnScript(path!, ["--state-dir", dir, "run", "--interval", "1"])]);
}
const series: Record<string, number[]> = {};
const end = Date.now() + Number(secs) * 1000;
while (Date.now() < end) {
  await new Promise((r) => setTimeout(r, 2000));
  for (const [n, k] of kids) {
    const st = await Deno.readTextFile(`/proc/${k.pid}/status`).catch(() => "");
    const rss = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? NaN) / 1024;
    (series[n] ??= []).push(rss);
  }
}
for (const [n, k] of kids) { k.kill("SIGTERM"); const o = await k.output(); if (o.code !== 0 && n !== "floor") console.error(n, o.code, new TextDecoder().decode(o.stderr).slice(0, 300)); }
const med = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]!; };
const floor = series.floor ? med(series.floor.slice(series.floor.length >> 1)) : NaN;
for (const [n, s] of Object.entries(series)) {
  const steady = s.slice(s.length >> 1);
  console.log(`${n.padEnd(12)} steady ${med(steady).toFixed(1)} MiB  ratio ${(med(steady) / floor).toFixed(3)}  min ${Math.min(...steady).toFixed(1)} max ${Math.max(...steady).toFixed(1)} last ${s.at(-1)!.toFixed(1)}`);
}
await Deno.remove(root, { recursive: true });
