/**
 * Masks the credentials of URLs (rtsp://user:pass@cam/…, http://admin:1234@10.0.0.5/…) in any
 * text: source names sent to clients, and every log line. The user part runs to the last '@'
 * before the host, so a password holding a raw '@' is masked whole.
 */
export function redact(s: string): string {
  return s.replace(/(\/\/)[^/\s"'\\]*@/g, '$1***@');
}
