import { FEATURE_GAP, type Gap, GAP_CODE_PATTERN, GAP_ERROR_KINDS } from "../wire/contract.ts";
import type { AgentStatus } from "../state/status_store.ts";

const KINDS: ReadonlySet<string> = new Set(GAP_ERROR_KINDS);

/**
 * The `gap` for the next heartbeat, built from what `status.json` records of the current outage
 * (so it survives restarts): `undefined` when nothing failed since the last accepted heartbeat,
 * or when the platform's last `features` did not include `gap` (nothing changes on the wire).
 * Only the kind, an HTTP status and a plain problem code leave the host: never a message.
 */
export function outageGap(status: AgentStatus): Gap | undefined {
  if (!(status.platform_features ?? []).includes(FEATURE_GAP)) return undefined;
  const error = status.last_error;
  const since = status.failing_since;
  if (status.consecutive_failures < 1 || error === null || since === null) return undefined;
  const httpStatus = error.http_status;
  return {
    since,
    attempts: status.consecutive_failures,
    last_error: {
      kind: KINDS.has(error.kind) ? error.kind as Gap["last_error"]["kind"] : "other",
      status: httpStatus !== null && httpStatus >= 100 && httpStatus <= 599 ? httpStatus : null,
      code: error.code !== null && GAP_CODE_PATTERN.test(error.code) ? error.code : null,
    },
  };
}
