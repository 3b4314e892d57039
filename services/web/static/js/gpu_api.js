/* The GPU page's requests: API URLs from its own path, and a GPU's range query. */

import { fetchJson, secondsParam } from './api.js';

/** Return the URL of an API path (api/v1/...) from the GPU page, one level under the dashboard. */
export function apiUrl(path, query) {
  const url = `../${path}`;
  return query ? `${url}?${query}` : url;
}

export function rangeQuery(uuid, fromS, toS) {
  return new URLSearchParams({ gpu: uuid, from: secondsParam(fromS), to: secondsParam(toS) });
}
