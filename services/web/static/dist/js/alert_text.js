import{isNumber}from'./format.js?v=9928236319547286';import{severalHosts}from'./hosts.js?v=9928236319547286';import{state}from'./state.js?v=9928236319547286';export const SEVERITIES=['critical','warning','info'];const COLOURS={critical:'danger',warning:'warning',info:'info'};export function validAlert(item){return item&&typeof item==='object'&&typeof item.key==='string'&&typeof item.rule==='string'&&typeof item.message==='string'?item:null;}
export function validSilence(item){return item&&typeof item==='object'&&isNumber(item.silence_id)&&isNumber(item.until_ts);}
export function isSilenced(alert){return isNumber(alert.silenced_until_ts);}
export function severityColour(severity){return Object.prototype.hasOwnProperty.call(COLOURS,severity)?COLOURS[severity]:'secondary';}
function severityRank(severity){const rank=SEVERITIES.indexOf(severity);return rank<0?SEVERITIES.length:rank;}
export function worstFirst(a,b){return(isSilenced(a)-isSilenced(b))||(severityRank(a.severity)-severityRank(b.severity))||((a.fired_ts??a.since_ts??0)-(b.fired_ts??b.since_ts??0))||(a.key<b.key?-1:a.key>b.key?1:0);}
export function worstSeverity(alerts){const loud=alerts.filter((alert)=>!isSilenced(alert)).sort(worstFirst);return loud.length?loud[0].severity:null;}
export function whereText(item){const host=typeof item.host==='string'&&item.host?item.host:null;if(typeof item.gpu_uuid!=='string'||!item.gpu_uuid)return host??'the server';const gpu=state.gpus.get(item.gpu_uuid);const index=isNumber(item.gpu_index)?item.gpu_index:(gpu?gpu.index:'?');const name=typeof item.gpu_name==='string'?item.gpu_name:(gpu?gpu.name:null);const gpuText=`GPU ${index}${name ? ` (${name})` : ''}`;return host&&severalHosts()?`${host} · ${gpuText}`:gpuText;}
export function cardHref(item){if(typeof item.gpu_uuid!=='string'||!state.gpus.has(item.gpu_uuid))return null;return `#${encodeURIComponent(cardId(item.gpu_uuid))}`;}
export function cardId(uuid){return `gpu-${uuid}`;}
export function plural(count,word){return `${count} ${word}${count === 1 ? '' : 's'}`;}
