// Times and durations in the current language.

import { getLang, t } from '../i18n';

/** A Unix-ms time as local date and time (`—` for null). */
export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return t('common.none');
  return new Intl.DateTimeFormat(getLang(), {
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  }).format(new Date(ms));
}

/** A duration in seconds, rounded to minutes. */
export function formatDuration(secs: number): string {
  if (secs < 60) return t('dur.lt_minute');
  const totalMin = Math.round(secs / 60);
  if (totalMin < 60) return t('dur.minutes', { m: String(totalMin) });
  return t('dur.hours', { h: String(Math.floor(totalMin / 60)), m: String(totalMin % 60) });
}
