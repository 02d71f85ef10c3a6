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

  'nav.logout': '退出登录',
  'nav.user': '{name} · {role}',
  'live.connecting': '正在连接服务器…',
  'live.online': '实时更新已连接',
  'live.offline': '连接中断，正在重连…',

  'common.loading': '加载中…',
  'common.back': '返回',
  'common.none': '—',
  'common.refresh': '刷新',
  'common.busy': '正在处理…',
  'common.choose': '请选择…',

  'role.referring_doctor': '转诊医生',
  'role.specialist': '专科医生',
  'role.it_admin': '信息科管理员',
  'role.operator': '运营管理员',

  'site_kind.county_hospital': '县级医院',
  'site_kind.township_clinic': '乡镇卫生院',
  'site_kind.specialist_centre': '专科中心',

  'login.heading': '登录',
  'login.username': '用户名',
  'login.password': '密码',
  'login.submit': '登录',
  'login.busy': '正在登录…',
  'login.session_ended': '登录已失效，请重新登录。',

  'status.requested': '已提交',
  'status.queued': '排队中',
  'status.offered': '已分派专家',
  'status.accepted': '已接诊',
  'status.in_consultation': '会诊中',
  'status.opinion_written': '已出具意见',
  'status.closed': '已结束',
  'status.cancelled': '已取消',
  'status.declined': '已拒绝',
  'status.expired': '已过期',

  'urgency.routine': '常规',
  'urgency.urgent': '紧急',
  'urgency.emergency': '危急',

  'consent.written': '书面同意',
  'consent.verbal': '口头同意',
  'consent.electronic': '电子签名同意',

  'direction.up': '上转（转往上级专科中心）',
  'direction.down': '下转（回基层随访）',

  'form.heading': '新建会诊申请',
  'form.pseudonym': '患者化名编号',
  'form.pseudonym_hint': '3–32 个字符：字母、数字和 -。请勿填写姓名或身份证号。',
  'form.specialty': '专科',
  'form.urgency': '紧急程度',
  'form.question': '会诊问题',
  'form.question_hint': '{n} / 2000 个字符',
  'form.centre': '首选专科中心',
  'form.centre_any': '不限',
  'form.consent': '已向患者说明远程会诊并取得知情同意',
  'form.consent_method': '同意方式',
  'form.submit': '提交申请',
  'form.busy': '正在提交…',
  'form.submitted': '申请已提交（患者 {pseudonym}）。',
  'form.fix_fields': '请更正标出的字段。',

  'validate.username': '请输入用户名（1–64 个字符）。',
  'validate.password': '请输入密码（1–256 个字符）。',
  'validate.required': '此项为必填项。',
  'validate.pseudonym': '化名须为 3–32 个字符，只能包含字母、数字和 -（不得使用患者姓名）。',
  'validate.pseudonym_id': '这看起来像身份证号码，请改用化名。',
  'validate.question': '请填写会诊问题（1–2000 个字符）。',
  'validate.question_long': '会诊问题最多 2000 个字符。',
  'validate.control_chars': '不能包含控制字符。',
  'validate.consent': '提交前须取得患者知情同意。',
  'validate.reason': '请填写原因。',
  'validate.site': '请选择接收机构。',
  'validate.diagnosis_needed': '签署前须填写诊断。',
  'validate.recommendations_needed': '签署前须填写建议。',
  'validate.new_username': '用户名须为 1–64 个字符：小写字母、数字、. _ -',
  'validate.new_password': '密码至少 8 个字符，最多 256 个字符。',
  'validate.display_name': '请填写显示名称（1–64 个字符）。',
  'validate.specialties': '专科医生至少需要一个专科。',

  'fielderr.required': '此项为必填项。',
  'fielderr.too_long': '内容过长。',
  'fielderr.too_short': '内容过短。',
  'fielderr.invalid_format': '格式不正确。',
  'fielderr.invalid_value': '取值无效。',
  'fielderr.unknown_reference': '所选项不存在。',

  'card.specialty': '专科',
  'card.urgency': '紧急程度',
  'card.question': '会诊问题',
  'card.requester': '申请医生',
  'card.specialist': '会诊专家',
  'card.created': '提交时间',
  'card.consent': '知情同意',
  'card.consent_value': '{method}，由 {by} 于 {time} 记录',
  'card.preferred': '首选中心',
  'card.reason': '原因',
  'card.queue_position': '排队位置：第 {n} 位',
  'card.wait': '预计等待：约 {time}',
  'card.wait_unknown': '预计等待：暂无在岗专家',
  'card.wait_soon': '预计等待：即将开始',
  'card.offered_waiting': '已分派给专家，等待专家确认。',
  'card.accepted_note': '{name} 已接诊，请进入会诊。',
  'card.cancel': '取消申请',
  'card.cancel_reason': '取消原因',
  'card.cancel_confirm': '确认取消申请',
  'card.accept': '接诊',
  'card.decline_offer': '暂不接诊（退回队列）',
  'card.decline': '不适合远程会诊',
  'card.decline_reason': '不适合远程会诊的原因',
  'card.decline_confirm': '确认拒绝',
  'card.acknowledge': '确认已阅',
  'card.acknowledged': '已于 {time} 确认',
  'card.join': '进入会诊',
  'card.referrals': '转诊建议',
  'card.referral_item': '{direction} → {site}：{reason}（{by}，{time}）',
  'card.propose_referral': '提出转诊建议',
  'card.no_opinion': '专家尚未出具意见。',

  'referral.direction': '方向',
  'referral.site': '接收机构',
  'referral.reason': '转诊原因',
  'referral.submit': '提交转诊建议',

  'dur.lt_minute': '不到 1 分钟',
  'dur.minutes': '{m} 分钟',
  'dur.hours': '{h} 小时 {m} 分钟',

  'opinion.heading': '会诊意见',
  'opinion.findings': '检查所见',
  'opinion.diagnosis': '诊断',
  'opinion.recommendations': '处理建议',
  'opinion.follow_up': '随访安排',
  'opinion.signed_by': '签名医生',
  'opinion.signed_at': '签名时间',
  'opinion.digest': '签名摘要（SHA-256）',
  'opinion.save': '保存草稿',
  'opinion.saved': '草稿已保存（{time}）',
  'opinion.dirty': '有未保存的修改',
  'opinion.sign': '签署意见',
  'opinion.sign_confirm_text': '签署后意见将不可修改，并发送给申请医生。确认签署吗？',
  'opinion.sign_confirm': '确认签署',

  'paired.banner': '{name} 已接诊患者 {pseudonym} 的会诊申请。',
  'paired.banner_specialist': '您已接诊患者 {pseudonym}（申请医生：{name}），请进入会诊。',
  'offer.banner': '新的会诊分派：患者 {pseudonym}（{specialty}）',

  'doctor.heading': '转诊医生工作台',
  'doctor.my_requests': '我的申请',
  'doctor.history': '历史记录',
  'doctor.no_requests': '暂无进行中的申请。',
  'doctor.no_history': '暂无历史记录。',

  'spec.heading': '专科医生工作台',
  'spec.availability': '接诊状态',
  'spec.available': '可接诊',
  'spec.unavailable': '暂停接诊',
  'spec.set_available': '开始接诊',
  'spec.set_unavailable': '暂停接诊',
  'spec.offer': '分派给您的会诊',
  'spec.no_offer': '当前没有分派给您的会诊。',
  'spec.queue': '本专科排队',
  'spec.queue_empty': '队列为空。',
  'spec.mine': '我的会诊',
  'spec.no_mine': '暂无进行中的会诊。',
  'spec.history': '历史记录',
  'spec.no_history': '暂无历史记录。',

  'room.patient': '患者 {pseudonym}',
  'room.you': '本人：{name}',
  'room.local_label': '{name}（本人）',
  'room.waiting': '等待对方进入会诊室…',
  'room.no_video': '无视频',
  'room.mute': '关闭麦克风',
  'room.unmute': '打开麦克风',
  'room.camera_off': '关闭摄像头',
  'room.camera_on': '打开摄像头',
  'room.leave': '离开会诊',
  'room.back': '返回工作台',
  'room.joining': '正在进入会诊室…',
  'room.join_failed': '无法进入会诊室：{error}',
  'room.closed': '与服务器的连接已断开。',
  'room.media_failed': '媒体连接已中断，您已被移出会诊室。',
  'room.state_label': '连接状态',

  'state.new': '准备中',
  'state.connecting': '正在连接',
  'state.connected': '已连接',
  'state.disconnected': '连接不稳定，正在恢复',
  'state.failed': '连接失败',
  'state.closed': '已断开',

  'it.heading': '线路与通话质量',
  'it.updated': '更新于 {time}（每 5 秒刷新）',
  'it.empty': '暂无数据',
  'it.rooms': '会诊室',
  'it.participants': '在线参与者',
  'it.rtp_in': '接收 RTP 包',
  'it.rtp_out': '转发 RTP 包',
  'it.keyframes': '关键帧请求',
  'it.site': '机构',
  'it.kind': '类型',
  'it.capacity': '线路带宽（kbit/s）',
  'it.active': '进行中的会诊',
  'it.waiting': '等待中的申请',

  'op.heading': '运营管理',
  'op.users': '用户',
  'op.username': '用户名',
  'op.display_name': '显示名称',
  'op.role': '角色',
  'op.site': '所属机构',
  'op.specialties': '专科',
  'op.status': '状态',
  'op.active': '正常',
  'op.disabled': '已停用',
  'op.new_user': '新建用户',
  'op.password': '初始密码',
  'op.create': '创建用户',
  'op.created': '已创建用户 {username}。',
  'op.audit': '审计日志',
  'op.at': '时间',
  'op.actor': '操作人',
  'op.action': '操作',
  'op.request': '申请编号',
  'op.address': '来源地址',
  'op.detail': '详情',
  'op.filter': '筛选',
  'op.no_events': '没有符合条件的记录。',

  'error.bad_json': '消息格式错误。',
  'error.bad_message': '消息字段缺失或类型错误。',
  'error.bad_request': '请求无效。',
  'error.unknown_type': '服务器不支持该请求。',
  'error.unsupported_version': '客户端版本与服务器不兼容，请刷新页面。',
  'error.too_large': '内容过大。',
  'error.binary_not_supported': '服务器不接受二进制消息。',
  'error.not_logged_in': '尚未登录，请重新登录。',
  'error.bad_credentials': '用户名或密码错误。',
  'error.missing_token': '尚未登录，请重新登录。',
  'error.invalid_token': '登录已失效，请重新登录。',
  'error.expired_token': '登录已过期，请重新登录。',
  'error.account_disabled': '该账号已停用。',
  'error.wrong_role': '您的角色无权执行此操作。',
  'error.not_yours': '这不是您的会诊申请。',
  'error.not_found': '未找到该记录。',
  'error.illegal_transition': '该申请当前状态下不能执行此操作。',
  'error.conflict': '该申请已被其他人更新（例如已被其他专家接诊）。',
  'error.already_exists': '该记录已存在。',
  'error.validation_failed': '请更正标出的字段。',
  'error.invalid_action': '无法执行此操作：{message}',
  'error.storage_unavailable': '数据存储暂时不可用，请稍后再试。',
  'error.already_logged_in': '已经登录。',
  'error.invalid_room': '会诊室无效。',
  'error.already_joined': '已在会诊室中。',
  'error.room_full': '会诊室已满。',
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

  'nav.logout': 'Log out',
  'nav.user': '{name} · {role}',
  'live.connecting': 'Connecting to the server…',
  'live.online': 'Live updates on',
  'live.offline': 'Connection lost, reconnecting…',

  'common.loading': 'Loading…',
  'common.back': 'Back',
  'common.none': '—',
  'common.refresh': 'Refresh',
  'common.busy': 'Working…',
  'common.choose': 'Choose…',

  'role.referring_doctor': 'Referring doctor',
  'role.specialist': 'Specialist',
  'role.it_admin': 'IT administrator',
  'role.operator': 'Operator',

  'site_kind.county_hospital': 'County hospital',
  'site_kind.township_clinic': 'Township clinic',
  'site_kind.specialist_centre': 'Specialist centre',

  'login.heading': 'Log in',
  'login.username': 'User name',
  'login.password': 'Password',
  'login.submit': 'Log in',
  'login.busy': 'Logging in…',
  'login.session_ended': 'Your session has ended; please log in again.',

  'status.requested': 'Requested',
  'status.queued': 'Queued',
  'status.offered': 'Offered to a specialist',
  'status.accepted': 'Accepted',
  'status.in_consultation': 'In consultation',
  'status.opinion_written': 'Opinion written',
  'status.closed': 'Closed',
  'status.cancelled': 'Cancelled',
  'status.declined': 'Declined',
  'status.expired': 'Expired',

  'urgency.routine': 'Routine',
  'urgency.urgent': 'Urgent',
  'urgency.emergency': 'Emergency',

  'consent.written': 'Written consent',
  'consent.verbal': 'Verbal consent',
  'consent.electronic': 'Electronic consent',

  'direction.up': 'Up (to the specialist centre)',
  'direction.down': 'Down (back to local follow-up)',

  'form.heading': 'New consultation request',
  'form.pseudonym': 'Patient pseudonym',
  'form.pseudonym_hint': '3–32 characters: letters, digits and -. Never the name or ID number.',
  'form.specialty': 'Specialty',
  'form.urgency': 'Urgency',
  'form.question': 'Clinical question',
  'form.question_hint': '{n} / 2000 characters',
  'form.centre': 'Preferred specialist centre',
  'form.centre_any': 'Any',
  'form.consent': 'The patient was informed and consents to the teleconsultation',
  'form.consent_method': 'How consent was given',
  'form.submit': 'Submit request',
  'form.busy': 'Submitting…',
  'form.submitted': 'Request submitted (patient {pseudonym}).',
  'form.fix_fields': 'Please correct the marked fields.',

  'validate.username': 'Enter a user name (1–64 characters).',
  'validate.password': 'Enter a password (1–256 characters).',
  'validate.required': 'This field is required.',
  'validate.pseudonym': "A pseudonym is 3–32 characters of A–Z, a–z, 0–9 and - (never the patient's name).",
  'validate.pseudonym_id': 'This looks like a resident ID number; use the pseudonym instead.',
  'validate.question': 'Enter the clinical question (1–2000 characters).',
  'validate.question_long': 'The question is at most 2000 characters.',
  'validate.control_chars': 'Control characters are not allowed.',
  'validate.consent': "The patient's consent is needed before submitting.",
  'validate.reason': 'Enter a reason.',
  'validate.site': 'Choose the receiving site.',
  'validate.diagnosis_needed': 'A diagnosis is needed before signing.',
  'validate.recommendations_needed': 'Recommendations are needed before signing.',
  'validate.new_username': 'A user name is 1–64 characters: lower-case letters, digits, . _ -',
  'validate.new_password': 'A password is 8–256 characters.',
  'validate.display_name': 'Enter a display name (1–64 characters).',
  'validate.specialties': 'A specialist needs at least one specialty.',

  'fielderr.required': 'This field is required.',
  'fielderr.too_long': 'Too long.',
  'fielderr.too_short': 'Too short.',
  'fielderr.invalid_format': 'Invalid format.',
  'fielderr.invalid_value': 'Invalid value.',
  'fielderr.unknown_reference': 'The chosen item does not exist.',

  'card.specialty': 'Specialty',
  'card.urgency': 'Urgency',
  'card.question': 'Question',
  'card.requester': 'Requested by',
  'card.specialist': 'Specialist',
  'card.created': 'Submitted',
  'card.consent': 'Consent',
  'card.consent_value': '{method}, recorded by {by} at {time}',
  'card.preferred': 'Preferred centre',
  'card.reason': 'Reason',
  'card.queue_position': 'Queue position: {n}',
  'card.wait': 'Estimated wait: about {time}',
  'card.wait_unknown': 'Estimated wait: no specialist on duty',
  'card.wait_soon': 'Estimated wait: any moment now',
  'card.offered_waiting': 'Offered to a specialist; waiting for the answer.',
  'card.accepted_note': '{name} accepted; please join the consultation.',
  'card.cancel': 'Cancel request',
  'card.cancel_reason': 'Reason for cancelling',
  'card.cancel_confirm': 'Cancel the request',
  'card.accept': 'Accept',
  'card.decline_offer': 'Pass (back to the queue)',
  'card.decline': 'Unsuitable for teleconsultation',
  'card.decline_reason': 'Why it is unsuitable for teleconsultation',
  'card.decline_confirm': 'Decline',
  'card.acknowledge': 'Acknowledge',
  'card.acknowledged': 'Acknowledged at {time}',
  'card.join': 'Join consultation',
  'card.referrals': 'Referral proposals',
  'card.referral_item': '{direction} → {site}: {reason} ({by}, {time})',
  'card.propose_referral': 'Propose a referral',
  'card.no_opinion': 'No opinion yet.',

  'referral.direction': 'Direction',
  'referral.site': 'Receiving site',
  'referral.reason': 'Reason for the referral',
  'referral.submit': 'Submit referral proposal',

  'dur.lt_minute': 'under a minute',
  'dur.minutes': '{m} min',
  'dur.hours': '{h} h {m} min',

  'opinion.heading': 'Opinion',
  'opinion.findings': 'Findings',
  'opinion.diagnosis': 'Diagnosis',
  'opinion.recommendations': 'Recommendations',
  'opinion.follow_up': 'Follow-up',
  'opinion.signed_by': 'Signed by',
  'opinion.signed_at': 'Signed at',
  'opinion.digest': 'Digest (SHA-256)',
  'opinion.save': 'Save draft',
  'opinion.saved': 'Draft saved ({time})',
  'opinion.dirty': 'Unsaved changes',
  'opinion.sign': 'Sign opinion',
  'opinion.sign_confirm_text':
    'A signed opinion cannot be changed and is sent to the referring doctor. Sign it now?',
  'opinion.sign_confirm': 'Sign now',

  'paired.banner': '{name} accepted the consultation for patient {pseudonym}.',
  'paired.banner_specialist': 'You accepted patient {pseudonym} (referred by {name}); please join.',
  'offer.banner': 'New offer: patient {pseudonym} ({specialty})',

  'doctor.heading': 'Referring doctor',
  'doctor.my_requests': 'My requests',
  'doctor.history': 'History',
  'doctor.no_requests': 'No open requests.',
  'doctor.no_history': 'No history yet.',

  'spec.heading': 'Specialist',
  'spec.availability': 'Availability',
  'spec.available': 'Available',
  'spec.unavailable': 'Not available',
  'spec.set_available': 'Become available',
  'spec.set_unavailable': 'Stop taking consultations',
  'spec.offer': 'Offered to you',
  'spec.no_offer': 'Nothing is offered to you right now.',
  'spec.queue': 'Queue of your specialties',
  'spec.queue_empty': 'The queue is empty.',
  'spec.mine': 'My consultations',
  'spec.no_mine': 'No open consultations.',
  'spec.history': 'History',
  'spec.no_history': 'No history yet.',

  'room.patient': 'Patient {pseudonym}',
  'room.you': 'You: {name}',
  'room.local_label': '{name} (you)',
  'room.waiting': 'Waiting for the other side to join…',
  'room.no_video': 'No video',
  'room.mute': 'Mute microphone',
  'room.unmute': 'Unmute microphone',
  'room.camera_off': 'Turn camera off',
  'room.camera_on': 'Turn camera on',
  'room.leave': 'Leave',
  'room.back': 'Back to the dashboard',
  'room.joining': 'Entering the room…',
  'room.join_failed': 'Cannot enter the room: {error}',
  'room.closed': 'The connection to the server was lost.',
  'room.media_failed': 'The media connection was lost and you were removed from the room.',
  'room.state_label': 'Connection',

  'state.new': 'Starting',
  'state.connecting': 'Connecting',
  'state.connected': 'Connected',
  'state.disconnected': 'Unstable, reconnecting',
  'state.failed': 'Connection failed',
  'state.closed': 'Disconnected',

  'it.heading': 'Line and call quality',
  'it.updated': 'Updated at {time} (every 5 s)',
  'it.empty': 'No data',
  'it.rooms': 'Rooms',
  'it.participants': 'Participants',
  'it.rtp_in': 'RTP packets in',
  'it.rtp_out': 'RTP packets forwarded',
  'it.keyframes': 'Keyframe requests',
  'it.site': 'Site',
  'it.kind': 'Kind',
  'it.capacity': 'Line capacity (kbit/s)',
  'it.active': 'Consultations in progress',
  'it.waiting': 'Waiting requests',

  'op.heading': 'Operations',
  'op.users': 'Users',
  'op.username': 'User name',
  'op.display_name': 'Display name',
  'op.role': 'Role',
  'op.site': 'Site',
  'op.specialties': 'Specialties',
  'op.status': 'Status',
  'op.active': 'Active',
  'op.disabled': 'Disabled',
  'op.new_user': 'New user',
  'op.password': 'Initial password',
  'op.create': 'Create user',
  'op.created': 'User {username} created.',
  'op.audit': 'Audit log',
  'op.at': 'Time',
  'op.actor': 'Actor',
  'op.action': 'Action',
  'op.request': 'Request',
  'op.address': 'Address',
  'op.detail': 'Detail',
  'op.filter': 'Filter',
  'op.no_events': 'No matching events.',

  'error.bad_json': 'Malformed message.',
  'error.bad_message': 'A message field is missing or has the wrong type.',
  'error.bad_request': 'Invalid request.',
  'error.unknown_type': 'The server does not support this request.',
  'error.unsupported_version': 'This client is not compatible with the server; reload the page.',
  'error.too_large': 'Too large.',
  'error.binary_not_supported': 'The server does not accept binary messages.',
  'error.not_logged_in': 'Not logged in; please log in again.',
  'error.bad_credentials': 'Wrong user name or password.',
  'error.missing_token': 'Not logged in; please log in again.',
  'error.invalid_token': 'Your session is no longer valid; please log in again.',
  'error.expired_token': 'Your session has expired; please log in again.',
  'error.account_disabled': 'This account is disabled.',
  'error.wrong_role': 'Your role may not do this.',
  'error.not_yours': 'This request is not yours.',
  'error.not_found': 'Not found.',
  'error.illegal_transition': 'This cannot be done in the current state of the request.',
  'error.conflict': 'Someone else changed the request first (e.g. another specialist accepted it).',
  'error.already_exists': 'This already exists.',
  'error.validation_failed': 'Please correct the marked fields.',
  'error.invalid_action': 'This cannot be done: {message}',
  'error.storage_unavailable': 'Storage is unavailable right now; try again shortly.',
  'error.already_logged_in': 'Already logged in.',
  'error.invalid_room': 'Invalid room.',
  'error.already_joined': 'Already in a room.',
  'error.room_full': 'The room is full.',
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
  if (key in zh) return t(key as MessageKey, { message: message || code });
  return t('error.unknown', { message: message || code });
}

/** Whether `key` is a message key (for keys built from server values). */
export function hasKey(key: string): key is MessageKey {
  return key in zh;
}

/** Text for a key built from a server value (`status.queued`), or the value itself if unknown. */
export function tOr(key: string, fallback: string): string {
  return hasKey(key) ? t(key) : fallback;
}

document.documentElement.lang = current;
