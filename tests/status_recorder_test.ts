import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { StatusRecorder, type StatusSink } from "../src/state/status_recorder.ts";
import { isoTime } from "../src/iso_time.ts";
import { emptyStatus } from "../src/state/status_store.ts";

function failingSink(failures: boolean[]): StatusSink & { saves: number } {
  const sink = {
    current: emptyStatus("agent-1"),
    saves: 0,
    save: () => {
      const fail = failures[sink.saves++] ?? false;
      return fail ? Promise.reject(new Error("No space left on device")) : Promise.resolve();
    },
  };
  return sink;
}

Deno.test("status recorder never throws; warns once per failing streak and says when it recovers", async () => {
  const lines: string[] = [];
  const logger = createLogger({ level: "info", write: (line) => lines.push(line) });
  const sink = failingSink([true, true, false, true]);
  const recorder = new StatusRecorder(sink, logger);
  for (let i = 0; i < 5; i++) await recorder.save();
  assert.equal(sink.saves, 5);
  const said = lines.map((l) => l.replace(/^\S+\s+/, "").trim());
  assert.deepEqual(said.map((l) => l.replace(/ +/, " ")), [
    "WARN Cannot write status file: No space left on device",
    "INFO Status file writable again",
    "WARN Cannot write status file: No space left on device",
    "INFO Status file writable again",
  ]);
});

Deno.test("status recorder: writers over one sink share one recorder", () => {
  const logger = createLogger({ level: "info", write: () => {} });
  const recorder = new StatusRecorder(failingSink([]), logger);
  assert.equal(StatusRecorder.over(recorder, logger), recorder);
  const sink = failingSink([]);
  const wrapped = StatusRecorder.over(sink, logger);
  assert.notEqual(wrapped, sink);
  assert.equal(wrapped.current, sink.current);
});

Deno.test("status recorder records failures, success and stops in status.json's fields", async () => {
  const logger = createLogger({ level: "info", write: () => {} });
  const sink = failingSink([]);
  const status = new StatusRecorder(sink, logger);
  const st = status.current;
  st.last_attempt_at = isoTime(1_000);
  const error = { kind: "network", http_status: null, code: null, message: "down" };
  status.failed(error);
  st.last_attempt_at = isoTime(2_000);
  status.failed(error);
  assert.equal(st.consecutive_failures, 2);
  assert.equal(st.failing_since, "1970-01-01T00:00:01.000Z");
  assert.deepEqual(st.last_error, error);
  status.succeeded(3_000);
  assert.equal(st.last_success_at, "1970-01-01T00:00:03.000Z");
  assert.deepEqual(
    [st.consecutive_failures, st.failing_since, st.last_error],
    [0, null, null],
  );
  st.sequence = 7;
  st.sequence_reserved = 106;
  st.next_attempt_at = isoTime(4_000);
  status.idle();
  assert.deepEqual([st.sequence_reserved, st.next_attempt_at], [7, null]);
  await status.stopped("shutdown", "SIGTERM", 5_000);
  assert.deepEqual(st.stopped, {
    at: "1970-01-01T00:00:05.000Z",
    reason: "shutdown",
    message: "SIGTERM",
  });
  assert.equal(sink.saves, 1);
});
