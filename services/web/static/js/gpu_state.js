/* The GPU page's state: which GPU, the chosen range (in the URL), and the window it covers. */

import { positive } from './format.js';
import { RANGES_S, config, rangeFromUrl } from './state.js';

export const DEFAULT_RANGE = '6h';

const gpu = config.gpu && typeof config.gpu === 'object' ? config.gpu : {};

export const page = {
  uuid: String(gpu.gpu_uuid ?? ''),
  rangeKey: rangeFromUrl(DEFAULT_RANGE),
  intervalS: positive(config.interval_s, 60),
  gen: 0, // bumped by each range load: an answer for an older range is dropped
};

/** Return the chosen range as {fromS, toS} (UTC epoch s), ending at the next tick time. */
export function rangeWindow() {
  const spanS = RANGES_S[page.rangeKey];
  const toS = Math.ceil(Date.now() / 1000 / page.intervalS) * page.intervalS;
  return { fromS: toS - spanS, toS, spanS };
}
