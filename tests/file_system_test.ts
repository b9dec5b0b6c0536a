import assert from "node:assert/strict";
import * as nodePath from "node:path";
import { basename, dirname, join } from "../src/file_system.ts";

Deno.test("file_system path helpers agree with node:path on state paths", () => {
  for (const parts of [["/a", "b"], ["/a/", "b"], ["a", "b", "c"], ["/", "x"], ["a//b", "/c"]]) {
    assert.equal(join(...parts), nodePath.join(...parts), JSON.stringify(parts));
  }
  for (const p of ["/a/b", "/a/b/", "a", "/a", "/", "a/b", "/var/lib/x/identity.json"]) {
    assert.equal(dirname(p), nodePath.dirname(p), `dirname ${p}`);
    assert.equal(basename(p), nodePath.basename(p), `basename ${p}`);
  }
});
