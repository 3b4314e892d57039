/* The GPU page's requests: API URLs from its own path, and what this server's API offers. */

import { fetchJson, secondsParam } from './api.js';

let documentAsked = null;

/** Return the URL of an API path (api/v1/...) from the GPU page, one level under the dashboard. */
export function apiUrl(path, query) {
  const url = `../${path}`;
  return query ? `${url}?${query}` : url;
}

export function rangeQuery(uuid, fromS, toS) {
  return new URLSearchParams({ gpu: uuid, from: secondsParam(fromS), to: secondsParam(toS) });
}

/**
 * Return this server's OpenAPI document (asked once), or null when it cannot be had. The page asks
 * only for routes and metrics it lists, so a server older than the page answers no 404 or 400.
 */
export function apiDocument() {
  if (!documentAsked) {
    documentAsked = fetchJson(apiUrl('api/v1/openapi.json'), undefined).catch(() => null);
  }
  return documentAsked;
}

/** Return whether the document lists GET path; true without a document (ask, and see). */
export function offersRoute(doc, path) {
  return !doc || !doc.paths ? true : Boolean(doc.paths[path] && doc.paths[path].get);
}

/** Return the schema of a route's query parameter, or null when the route has no such one. */
export function parameterSchema(doc, path, name) {
  const get = doc && doc.paths && doc.paths[path] ? doc.paths[path].get : null;
  const found = get && Array.isArray(get.parameters)
    ? get.parameters.find((param) => param && param.name === name) : null;
  return found ? found.schema || {} : null;
}

/** Return the values a (possibly repeated) parameter may take, or null when the document says not. */
export function parameterEnum(doc, path, name) {
  const schema = parameterSchema(doc, path, name);
  if (!schema) return null;
  const values = schema.type === 'array' && schema.items ? schema.items.enum : schema.enum;
  return Array.isArray(values) ? values : null;
}
