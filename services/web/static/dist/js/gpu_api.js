import{fetchJson,secondsParam}from'./api.js?v=28e8a41f4bbe9465';export function apiUrl(path,query){const url=`../${path}`;return query?`${url}?${query}`:url;}
export function rangeQuery(uuid,fromS,toS){return new URLSearchParams({gpu:uuid,from:secondsParam(fromS),to:secondsParam(toS)});}
