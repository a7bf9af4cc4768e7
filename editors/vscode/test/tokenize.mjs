// Tokenizes rule files with the real TextMate engine (vscode-textmate + Oniguruma) and checks
// that each kind of token gets its scope. Run: npm test (from editors/vscode).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import vsctm from 'vscode-textmate';
import oniguruma from 'vscode-oniguruma';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));

const registry = new vsctm.Registry({
  onigLib: Promise.resolve({
    createOnigScanner: (s) => new oniguruma.OnigScanner(s),
    createOnigString: (s) => new oniguruma.OnigString(s),
  }),
  loadGrammar: async () => {
    const file = path.join(here, '..', 'syntaxes', 'leadscore.tmLanguage.json');
    return vsctm.parseRawGrammar(fs.readFileSync(file, 'utf8'), file);
  },
});
const grammar = await registry.loadGrammar('source.leadscore');

function tokens(text) {
  let stack = vsctm.INITIAL;
  const out = [];
  for (const line of text.split('\n')) {
    const r = grammar.tokenizeLine(line, stack);
    for (const t of r.tokens) out.push({ text: line.slice(t.startIndex, t.endIndex), scopes: t.scopes });
    stack = r.ruleStack;
  }
  return out;
}

const sample = [
  'ruleset "acme-b2b"',
  '# a comment',
  'fit "Senior title" +15 when lead.title matches /\\b(vp|head)\\b/i',
  'score "Pricing page" +10 on page where path starts_with "/pricing" limit 3 per 7d',
  'stage sql when reached mql and (event "Form Submitted" where form == "demo" or score >= 100)',
].join('\n');
const toks = tokens(sample);
const expect = [
  ['ruleset', 'keyword.declaration.leadscore'],
  ['# a comment', 'comment.line.number-sign.leadscore'],
  ['fit', 'keyword.declaration.leadscore'],
  ['+15', 'constant.numeric.points.leadscore'],
  ['when', 'keyword.control.leadscore'],
  ['lead.title', 'variable.other.member.leadscore'],
  ['/\\b(vp|head)\\b/i', 'string.regexp.leadscore'],
  ['page', 'support.constant.leadscore'],
  ['starts_with', 'keyword.control.leadscore'],
  ['7d', 'constant.numeric.duration.leadscore'],
  ['==', 'keyword.operator.comparison.leadscore'],
  ['>=', 'keyword.operator.comparison.leadscore'],
  ['score', 'support.constant.leadscore'],
];
let failed = 0;
for (const [text, scope] of expect) {
  const hit = toks.find((t) => t.text.trim() === text && t.scopes.includes(scope));
  if (!hit) {
    failed++;
    const seen = toks.filter((t) => t.text.trim() === text).map((t) => t.scopes.join(' '));
    console.log(`FAIL ${JSON.stringify(text)} wants ${scope}; got ${JSON.stringify(seen)}`);
  }
}
const strings = toks.filter((t) => t.scopes.includes('string.quoted.double.leadscore'));
if (!strings.some((t) => t.text.includes('acme-b2b'))) { failed++; console.log('FAIL string scope'); }

// every shipped rule file tokenizes without throwing
const rulesDir = path.join(here, '..', '..', '..', 'rules');
let files = 0;
for (const dir of fs.readdirSync(rulesDir)) {
  const full = path.join(rulesDir, dir);
  if (!fs.statSync(full).isDirectory()) continue;
  for (const f of fs.readdirSync(full).filter((f) => f.endsWith('.rules'))) {
    tokens(fs.readFileSync(path.join(full, f), 'utf8'));
    files++;
  }
}
const total = expect.length + 1;
console.log(`${files} shipped rule files tokenized`);
console.log(`${total - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
