/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: every line is a
 * `# HELP`, a `# TYPE` or a sample; a sample's family must be TYPEd before it, once; label values
 * are unescaped. Returns `name{labels}` (labels as written) → value.
 */
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABELS = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*")*\\}`;
const SAMPLE = new RegExp(`^(${NAME})(${LABELS})? ([-+]?(?:[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const HELP = new RegExp(`^# HELP (${NAME}) .+$`);

export function parsePrometheus(text: string): Map<string, number> {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const typed = new Map<string, string>();
  const out = new Map<string, number>();
  for (const line of text.slice(0, -1).split('\n')) {
    const t = TYPE.exec(line);
    if (t) {
      if (typed.has(t[1])) throw new Error(`TYPE given twice for ${t[1]}`);
      typed.set(t[1], t[2]);
      continue;
    }
    if (HELP.test(line)) continue;
    const s = SAMPLE.exec(line);
    if (!s) throw new Error(`not a valid exposition line: ${JSON.stringify(line)}`);
    if (!typed.has(s[1])) throw new Error(`sample before its TYPE: ${s[1]}`);
    if (typed.get(s[1]) === 'counter' && !s[1].endsWith('_total')) throw new Error(`counter ${s[1]} should end in _total`);
    const key = s[1] + (s[2] ?? '');
    if (out.has(key)) throw new Error(`duplicate sample ${key}`);
    out.set(key, Number(s[3].replace('Inf', 'Infinity')));
  }
  return out;
}
