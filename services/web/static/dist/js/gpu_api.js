import{fetchJson,secondsParam}from'./api.js?v=773cf89459aa0c50';export function apiUrl(path,query){const url=`../${path}`;return query?`${url}?${query}`:url;}
export function rangeQuery(uuid,fromS,toS){return new URLSearchParams({gpu:uuid,from:secondsParam(fromS),to:secondsParam(toS)});}
