/**
 * The platform trust as one configuration setting: a CA file or CA pins. The nearest layer that
 * names either gives it whole, so pins in /etc never clash with a CA file given in the
 * environment (enroll refuses both at once), and a CA file there never adds to pinned trust.
 */

/** One layer's trust: a CA file, pins (not yet validated), or neither. */
export interface TrustSetting {
  caFile?: string;
  caPins?: string[];
}

/** The first of `layers` (nearest first) naming a CA file or pins, with its name; else undefined. */
export function nearestTrust<S extends string>(
  layers: readonly (readonly [S, TrustSetting])[],
): [S, TrustSetting] | undefined {
  for (const [name, layer] of layers) {
    const caPins = layer.caPins?.length ? layer.caPins : undefined;
    if (layer.caFile !== undefined || caPins !== undefined) {
      return [name, { caFile: layer.caFile, caPins }];
    }
  }
  return undefined;
}
