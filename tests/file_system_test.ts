import assert from "node:assert/strict";
import * as nodePath from "node:path";
import { basename, dirname, join, resolve } from "../src/file_system.ts";

Deno.test("file_system path helpers agree with node:path on state paths", () => {
  for (const parts of [["/a", "b"], ["/a/", "b"], ["a", "b", "c"], ["/", "x"], ["a//b", "/c"]]) {
    assert.equal(join(...parts), nodePath.join(...parts), JSON.stringify(parts));
  }
  for (const p of ["/a/b", "/a/b/", "a", "/a", "/", "a/b", "/var/lib/x/identity.json"]) {
    assert.equal(dirname(p), nodePath.dirname(p), `dirname ${p}`);
    assert.equal(basename(p), nodePath.basename(p), `basename ${p}`);
  }
});

Deno.test(
  "file_system resolve agrees with node:path resolve on POSIX state paths",
  { ignore: Deno.build.os === "windows" },
  () => {
    const paths = [
      "/var/lib/oneconnect",
      "/var/lib/oneconnect/",
      "/var//lib/./oneconnect/../x",
      "/..",
      "/../a/..",
      "/",
      "//a",
      "state",
      "./state/",
      "../state",
      "../../../../../../..",
      "a/./b/../../c",
      "",
      ".",
    ];
    for (const p of paths) assert.equal(resolve(p), nodePath.resolve(p), `resolve ${p}`);
    assert.equal(resolve("x/../y", () => "/home/u"), "/home/u/y");
  },
);
