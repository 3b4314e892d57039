const FETCH_TIMEOUT_MS=120000;export function secondsParam(value){return String(Math.round(value*1000)/1000);}
export async function fetchJson(url,signal){return request(url,{signal:signal??AbortSignal.timeout(FETCH_TIMEOUT_MS),headers:{Accept:'application/json'},});}
export async function postJson(url,body){return request(url,{method:'POST',signal:AbortSignal.timeout(FETCH_TIMEOUT_MS),headers:{Accept:'application/json','Content-Type':'application/json'},body:JSON.stringify(body),});}
async function request(url,init){const response=await fetch(url,init);document.getElementById('auth-alert').hidden=response.status!==401;let body=null;try{body=await response.json();}catch(error){body=null;}
if(!response.ok){const reason=body&&typeof body.error==='string'?body.error:`HTTP ${response.status}`;const error=new Error(reason);error.status=response.status;throw error;}
return body;}
export function oneAtATime(fn){let running=false;return async()=>{if(running)return;running=true;try{await fn();}finally{running=false;}};}
