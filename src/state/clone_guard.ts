/**
 * The clone guard: an identity is bound to the machine id of the host that enrolled it, so a disk
 * image copied to another host neither sends heartbeats nor renews under the original's name.
 */
import { CredentialRejectedError } from "../errors.ts";

/**
 * The refusal for `action` (e.g. "send heartbeats") when the identity was enrolled on a host with
 * another machine id, else null. An unknown machine id on either side (an identity enrolled on a
 * host without one, a host that cannot read its own) proves nothing and is allowed.
 */
export function cloneRefusal(
  enrolledMachineId: string | null,
  hostMachineId: string | null,
  action: string,
): CredentialRejectedError | null {
  if (enrolledMachineId === null || hostMachineId === null) return null;
  if (enrolledMachineId === hostMachineId) return null;
  return new CredentialRejectedError(
    `Refusing to ${action}: identity was enrolled on another host (cloned image?): re-enroll with "oneconnect-agent enroll --force"`,
  );
}
