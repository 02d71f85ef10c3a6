// All user-visible strings. Simplified Chinese is the default; the choice is
// remembered in localStorage.

export type Lang = 'zh-CN' | 'en';

export const LANGS: { lang: Lang; label: string }[] = [
  { lang: 'zh-CN', label: '简体中文' },
  { lang: 'en', label: 'English' },
];

const zh = {
  'app.title': '远程会诊',
  'lang.label': '语言',

  'join.heading': '加入视频会诊',
  'join.username': '用户名',
  'join.password': '密码',
  'join.room': '会诊室',
  'join.room_hint': '1–64 个字符：字母、数字、_ - .',
  'join.submit': '加入会诊',
  'join.busy': '正在连接…',

  'room.heading': '会诊室：{room}',
  'room.you': '本人：{name}',
  'room.local_label': '{name}（本人）',
  'room.waiting': '等待其他参与者加入…',
  'room.no_video': '无视频',
  'room.mute': '关闭麦克风',
  'room.unmute': '打开麦克风',
  'room.camera_off': '关闭摄像头',
  'room.camera_on': '打开摄像头',
  'room.leave': '离开会诊',
  'room.back': '返回加入页面',
  'room.closed': '与服务器的连接已断开。',
  'room.media_failed': '媒体连接已中断，您已被移出会诊室。',
  'room.state_label': '连接状态',

  'state.new': '准备中',
  'state.connecting': '正在连接',
  'state.connected': '已连接',
  'state.disconnected': '连接不稳定，正在恢复',
  'state.failed': '连接失败',
  'state.closed': '已断开',

  'validate.username': '请输入用户名（1–64 个字符）。',
  'validate.password': '请输入密码（1–256 个字符）。',
  'validate.room': '会诊室名称须为 1–64 个字符，只能包含字母、数字、_ - .',

  'error.bad_json': '消息格式错误。',
  'error.bad_message': '消息字段缺失或类型错误。',
  'error.unknown_type': '服务器不支持该请求。',
  'error.unsupported_version': '客户端版本与服务器不兼容，请刷新页面。',
  'error.too_large': '消息过大，连接已关闭。',
  'error.binary_not_supported': '服务器不接受二进制消息。',
  'error.not_logged_in': '尚未登录，请重新加入。',
  'error.bad_credentials': '用户名或密码错误。',
  'error.already_logged_in': '已经登录。',
  'error.invalid_room': '会诊室名称无效。',
  'error.already_joined': '已在会诊室中。',
  'error.room_full': '会诊室已满（最多 16 人）。',
  'error.not_joined': '尚未加入会诊室。',
  'error.bad_sdp': '媒体协商失败（浏览器与服务器没有共同的编解码器）。',
  'error.no_pending_offer': '媒体协商状态不一致。',
  'error.bad_candidate': '网络候选地址无效。',
  'error.rate_limited': '请求过于频繁，请稍后再试。',
  'error.internal': '服务器暂时无法处理，请稍后再试。',
  'error.timeout': '服务器无响应，请检查网络后重试。',
  'error.connect_failed': '无法连接到服务器，请检查网络后重试。',
  'error.connection_closed': '与服务器的连接已断开。',
  'error.media_unavailable': '无法使用摄像头或麦克风，请检查设备和浏览器权限。',
  'error.webrtc_failed': '无法建立媒体连接。',
  'error.unknown': '发生错误：{message}',
};

export type MessageKey = keyof typeof zh;

const en: Record<MessageKey, string> = {
  'app.title': 'Remote consultation',
  'lang.label': 'Language',

  'join.heading': 'Join a video consultation',
  'join.username': 'User name',
  'join.password': 'Password',
  'join.room': 'Consultation room',
  'join.room_hint': '1–64 characters: letters, digits, _ - .',
  'join.submit': 'Join consultation',
  'join.busy': 'Connecting…',

  'room.heading': 'Room: {room}',
  'room.you': 'You: {name}',
  'room.local_label': '{name} (you)',
  'room.waiting': 'Waiting for other participants…',
  'room.no_video': 'No video',
  'room.mute': 'Mute microphone',
  'room.unmute': 'Unmute microphone',
  'room.camera_off': 'Turn camera off',
  'room.camera_on': 'Turn camera on',
  'room.leave': 'Leave',
  'room.back': 'Back to the join page',
  'room.closed': 'The connection to the server was lost.',
  'room.media_failed': 'The media connection was lost and you were removed from the room.',
  'room.state_label': 'Connection',

  'state.new': 'Starting',
  'state.connecting': 'Connecting',
  'state.connected': 'Connected',
  'state.disconnected': 'Unstable, reconnecting',
  'state.failed': 'Connection failed',
  'state.closed': 'Disconnected',

  'validate.username': 'Enter a user name (1–64 characters).',
  'validate.password': 'Enter a password (1–256 characters).',
  'validate.room': 'The room name must be 1–64 characters: letters, digits, _ - .',

  'error.bad_json': 'Malformed message.',
  'error.bad_message': 'A message field is missing or has the wrong type.',
  'error.unknown_type': 'The server does not support this request.',
  'error.unsupported_version': 'This client is not compatible with the server; reload the page.',
  'error.too_large': 'Message too large; the connection was closed.',
  'error.binary_not_supported': 'The server does not accept binary messages.',
  'error.not_logged_in': 'Not logged in; please join again.',
  'error.bad_credentials': 'Wrong user name or password.',
  'error.already_logged_in': 'Already logged in.',
  'error.invalid_room': 'Invalid room name.',
  'error.already_joined': 'Already in a room.',
  'error.room_full': 'The room is full (16 participants at most).',
  'error.not_joined': 'Not in a room.',
  'error.bad_sdp': 'Media negotiation failed (no codec in common between browser and server).',
  'error.no_pending_offer': 'Media negotiation got out of step.',
  'error.bad_candidate': 'Invalid network candidate.',
  'error.rate_limited': 'Too many requests; try again shortly.',
  'error.internal': 'The server cannot do this right now; try again shortly.',
  'error.timeout': 'The server did not answer; check the network and try again.',
  'error.connect_failed': 'Cannot reach the server; check the network and try again.',
  'error.connection_closed': 'The connection to the server was lost.',
  'error.media_unavailable': 'Cannot use the camera or microphone; check the devices and browser permissions.',
  'error.webrtc_failed': 'Could not set up the media connection.',
  'error.unknown': 'Error: {message}',
};

const dictionaries: Record<Lang, Record<MessageKey, string>> = { 'zh-CN': zh, en };

const STORAGE_KEY = 'telemed.lang';

function loadLang(): Lang {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved === 'zh-CN' || saved === 'en') return saved;
  } catch {
    // storage unavailable: use the default
  }
  return 'zh-CN';
}

let current: Lang = loadLang();
const listeners = new Set<() => void>();

export function getLang(): Lang {
  return current;
}

export function setLang(lang: Lang): void {
  if (lang === current) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered, still switched
  }
  document.documentElement.lang = lang;
  for (const listener of listeners) listener();
}

/** Calls `listener` after every language change; returns an unsubscribe function. */
export function onLangChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function t(key: MessageKey, params: Record<string, string> = {}): string {
  const template = dictionaries[current][key];
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => params[name] ?? whole);
}

/** Text for an error code from the server (or the client), falling back to the server's message. */
export function errorText(code: string, message?: string): string {
  const key = `error.${code}`;
  if (key in zh) return t(key as MessageKey);
  return t('error.unknown', { message: message || code });
}

document.documentElement.lang = current;
