/**
 * The README is a front door and docs/ holds the rest: every relative link in README.md and
 * docs/*.md must reach an existing file and, with a `#anchor`, an existing heading there, so that a
 * section moved between files cannot leave a dead link behind.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { repoPath } from "./_support/helpers.ts";

const ROOT = repoPath();
/** The README stays a front door: the two commands, what the agent is, install, enroll, links. */
const README_MAX_LINES = 250;

/** `text` without fenced code blocks and HTML comments (no heading lives there). */
function withoutBlocks(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, "").replace(/<!--[\s\S]*?-->/g, "");
}

/** `text` without code blocks, comments and inline code spans (no link lives there). */
function prose(text: string): string {
  return withoutBlocks(text).replace(/`[^`\n]*`/g, "");
}

/** GitHub's anchor for a heading: lowercase, punctuation removed, spaces to '-'. */
export function headingSlug(heading: string): string {
  return heading
    .trim()
    .replace(/`/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

/** Every anchor a Markdown document offers (duplicates numbered `-1`, `-2` as GitHub does). */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const found = new Set<string>();
  for (const [, heading] of withoutBlocks(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$/gm)) {
    const slug = headingSlug(heading!);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    found.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return found;
}

/** The relative link targets of a Markdown document (`[text](target)`, not URLs). */
export function relativeLinks(text: string): string[] {
  return [...prose(text).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)]
    .map((m) => m[1]!)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

async function markdownFiles(): Promise<string[]> {
  const files = [join(ROOT, "README.md")];
  for await (const entry of Deno.readDir(join(ROOT, "docs"))) {
    if (entry.isFile && entry.name.endsWith(".md")) files.push(join(ROOT, "docs", entry.name));
  }
  return files.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("every relative link in README.md and docs/*.md reaches an existing file and heading", async () => {
  const broken: string[] = [];
  let checked = 0;
  for (const file of await markdownFiles()) {
    const text = await Deno.readTextFile(file);
    for (const link of relativeLinks(text)) {
      checked++;
      const [path, anchor] = link.split("#", 2) as [string, string | undefined];
      const target = path === "" ? file : normalize(join(dirname(file), decodeURI(path)));
      const where = `${relative(ROOT, file)}: (${link})`;
      if (!target.startsWith(ROOT) || !(await exists(target))) {
        broken.push(`${where}: no file ${relative(ROOT, target)}`);
        continue;
      }
      if (anchor === undefined) continue;
      assert.ok(target.endsWith(".md"), `${where}: an anchor into a file that is not Markdown`);
      if (!anchors(await Deno.readTextFile(target)).has(anchor)) {
        broken.push(`${where}: no heading "#${anchor}" in ${relative(ROOT, target)}`);
      }
    }
  }
  assert.ok(checked > 50, `only ${checked} links found: is the link pattern still right?`);
  assert.deepEqual(broken, []);
});

Deno.test(`README.md is at most ${README_MAX_LINES} lines and starts with the demo and test commands`, async () => {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const lines = readme.split("\n");
  if (lines.at(-1) === "") lines.pop();
  assert.ok(lines.length <= README_MAX_LINES, `README.md has ${lines.length} lines`);
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? "";
  assert.match(firstBlock, /^npx --yes deno@2\.9\.6 task demo\b/m);
  assert.match(firstBlock, /^npx --yes deno@2\.9\.6 task test\b/m);
});

Deno.test("the link checker finds GitHub's anchors and ignores code", () => {
  const doc = [
    "# Proxies: PAC and OS settings",
    "## Network and server (heartbeat; `run --once` shown, `run` retries with backoff)",
    "## Telemetry depth (issue 20)",
    "## Notes",
    "## Notes",
    "```sh",
    "# Debian/Ubuntu: not a heading [x](nowhere.md)",
    "```",
    "see [a](other.md#x), `[b](code.md)`, [c](https://example.com) and [d](#notes-1)",
  ].join("\n");
  assert.deepEqual(
    [...anchors(doc)],
    [
      "proxies-pac-and-os-settings",
      "network-and-server-heartbeat-run---once-shown-run-retries-with-backoff",
      "telemetry-depth-issue-20",
      "notes",
      "notes-1",
    ],
  );
  assert.deepEqual(relativeLinks(doc), ["other.md#x", "#notes-1"]);
});
