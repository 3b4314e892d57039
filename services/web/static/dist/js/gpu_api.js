import{fetchJson,secondsParam}from'./api.js?v=9928236319547286';export function apiUrl(path,query){const url=`../${path}`;return query?`${url}?${query}`:url;}
export function rangeQuery(uuid,fromS,toS){return new URLSearchParams({gpu:uuid,from:secondsParam(fromS),to:secondsParam(toS)});}
