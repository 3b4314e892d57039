import{fetchJson,secondsParam}from'./api.js?v=a6c5fa5f27fb3921';export function apiUrl(path,query){const url=`../${path}`;return query?`${url}?${query}`:url;}
export function rangeQuery(uuid,fromS,toS){return new URLSearchParams({gpu:uuid,from:secondsParam(fromS),to:secondsParam(toS)});}
