import{fetchJson,secondsParam}from'./api.js?v=a3301592a50ef057';export function apiUrl(path,query){const url=`../${path}`;return query?`${url}?${query}`:url;}
export function rangeQuery(uuid,fromS,toS){return new URLSearchParams({gpu:uuid,from:secondsParam(fromS),to:secondsParam(toS)});}
