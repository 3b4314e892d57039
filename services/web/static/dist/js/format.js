export const GIB=1024**3;const MIB=1024**2;const PALETTE=['#5aa9e6','#f4a259','#7bd389','#f25f5c','#c49bff','#ffe066','#4ecdc4','#ff8fd0','#b8b8b8','#c8a27a',];export function positive(value,fallback){return typeof value==='number'&&value>0&&Number.isFinite(value)?value:fallback;}
export function isNumber(value){return typeof value==='number'&&Number.isFinite(value);}
export function putText(node,text){if(node.textContent!==text)node.textContent=text;}
export function element(tag,className,text){const node=document.createElement(tag);if(className)node.className=className;if(text!==undefined)node.textContent=text;return node;}
export function fillSelect(select,names,chosen){const wanted=[...names].sort();const have=[...select.options].slice(1).map((option)=>option.value);if(wanted.join('\n')!==have.join('\n')){const options=wanted.map((name)=>{const option=element('option','',name);option.value=name;return option;});select.replaceChildren(select.options[0],...options);}
select.value=chosen??'';}
const numberFormats=new Map();export function formatNumber(value,digits,fixed){const key=`${digits}/${Boolean(fixed)}`;if(!numberFormats.has(key)){const options={maximumFractionDigits:digits,minimumFractionDigits:fixed?digits:0};numberFormats.set(key,new Intl.NumberFormat(undefined,options));}
return numberFormats.get(key).format(value);}
export function withUnit(value,unit,digits){return isNumber(value)?`${formatNumber(value, digits)} ${unit}`:'n/a';}
const dateFormats=new Map();const DATE_OPTIONS={clock:{hour:'2-digit',minute:'2-digit',second:'2-digit'},full:{year:'numeric',month:'short',day:'numeric',hour:'2-digit',minute:'2-digit',second:'2-digit',},minute:{hour:'2-digit',minute:'2-digit'},dayMinute:{month:'short',day:'numeric',hour:'2-digit',minute:'2-digit'},day:{month:'short',day:'numeric'},};export function dateFormat(kind){let format=dateFormats.get(kind);if(!format){format=new Intl.DateTimeFormat(undefined,DATE_OPTIONS[kind]);dateFormats.set(kind,format);}
return format;}
export function formatClock(ms){return dateFormat('clock').format(new Date(ms));}
export function formatFull(ms){return dateFormat('full').format(new Date(ms));}
export function formatDuration(seconds){if(seconds<90)return `${formatNumber(seconds, 1)} s`;if(seconds<5400)return `${formatNumber(seconds / 60, 1)} min`;if(seconds<129600)return `${formatNumber(seconds / 3600, 1)} h`;return `${formatNumber(seconds / 86400, 1)} d`;}
export function formatWhen(ms){const date=new Date(ms);if(date.toDateString()===new Date().toDateString())return formatClock(ms);return dateFormat('dayMinute').format(date);}
export function formatMinute(ms){const date=new Date(ms);if(date.toDateString()===new Date().toDateString())return dateFormat('minute').format(date);return dateFormat('dayMinute').format(date);}
export function colourFor(position){if(position<PALETTE.length)return PALETTE[position];const hue=Math.round((position*137.508)%360);return `hsl(${hue}, 65%, 65%)`;}
export function setText(node,text){putText(node,text);node.classList.toggle('na',text==='n/a');}
export function memoryText(used,total){if(!isNumber(used))return'n/a';const unitBytes=Math.max(used,isNumber(total)?total:0)>=GIB?GIB:MIB;const unit=unitBytes===GIB?'GiB':'MiB';const digits=unitBytes===GIB?1:0;const shown=formatNumber(used/unitBytes,digits,true);return isNumber(total)?`${shown} / ${formatNumber(total / unitBytes, digits, true)} ${unit}`:`${shown} ${unit}`;}
let amountFormat=null;const costFormats=new Map();export function formatAmount(value){if(!isNumber(value))return'n/a';if(Math.abs(value)>=100)return formatNumber(value,0);if(!amountFormat)amountFormat=new Intl.NumberFormat(undefined,{maximumSignificantDigits:3});return amountFormat.format(value);}
function costFormat(code){let format=costFormats.get(code);if(!format){format=new Intl.NumberFormat(undefined,{style:'currency',currency:code});costFormats.set(code,format);}
return format;}
export function formatCost(value,currency){if(!isNumber(value))return'n/a';if(/^[A-Za-z]{3}$/.test(currency||'')){try{return costFormat(currency.toUpperCase()).format(value);}catch(error){}}
const amount=formatNumber(value,2,true);return currency?`${amount} ${currency}`:amount;}
export function markPressed(attribute,value){for(const button of document.querySelectorAll(`[${attribute}]`)){const active=button.getAttribute(attribute)===value;button.classList.toggle('active',active);button.setAttribute('aria-pressed',String(active));}}
export function placeInOrder(list,nodes){nodes.forEach((node,position)=>{const here=list.children[position];if(here!==node)list.insertBefore(node,here||null);});while(list.children.length>nodes.length)list.lastElementChild.remove();}
export function setNote(id,text){const note=document.getElementById(id);note.hidden=!text;note.textContent=text||'';}
const scrollAreas=typeof ResizeObserver==='function'?new ResizeObserver((entries)=>{for(const entry of entries){const box=entry.target.closest('[data-scroll-area]')||entry.target;const scrolls=box.scrollWidth>box.clientWidth+1||box.scrollHeight>box.clientHeight+1;if(scrolls)box.tabIndex=0;else box.removeAttribute('tabindex');}}):null;export function namedScrollArea(box,label){box.setAttribute('role','region');box.setAttribute('aria-label',label);box.dataset.scrollArea='';if(!scrollAreas){box.tabIndex=0;return;}
scrollAreas.observe(box);if(box.firstElementChild)scrollAreas.observe(box.firstElementChild);}
export function exactTime(ms){return element('span','exact-time',formatFull(ms));}
let disclosureCount=0;export function disclosureButton(panel,label,className=''){const button=element('button',`btn btn-link btn-sm p-0 disclosure-button${className ? ` ${className}` : ''}`,label);button.type='button';disclosureCount+=1;if(!panel.id)panel.id=`disclosure-${disclosureCount}`;button.setAttribute('aria-controls',panel.id);button.setAttribute('aria-expanded',String(!panel.hidden));button.addEventListener('click',()=>{panel.hidden=!panel.hidden;button.setAttribute('aria-expanded',String(!panel.hidden));});return button;}
