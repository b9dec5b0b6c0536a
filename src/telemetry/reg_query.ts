/**
 * Values from `reg query` output. reg.exe prints one value a line, `    Name    REG_TYPE    data`,
 * and an empty string value as `    Name    REG_SZ    ` with nothing after the type (Wine prints
 * every SMBIOS value so): each line is read on its own, so an empty value is null, never the next
 * line's text.
 */

/**
 * The data of value `name` (case-insensitive, as the registry compares names) of type `type`,
 * trimmed; null when the value is absent, of another type, or empty.
 */
export function regQueryValue(text: string, name: string, type = "REG_SZ"): string | null {
  const wanted = name.toLowerCase();
  for (const raw of text.split(/\r?\n|\r/)) {
    const line = raw.trim();
    if (line.slice(0, name.length).toLowerCase() !== wanted) continue;
    // Blanks only ([ \t]), never \s: a \s would run on into the next line.
    const rest = /^[ \t]+(REG_[A-Z_]+)(?:[ \t]+(.*))?$/.exec(line.slice(name.length));
    if (rest === null) continue;
    return rest[1] === type && rest[2] !== undefined && rest[2] !== "" ? rest[2] : null;
  }
  return null;
}
