/**
 * The API reference in docs/reference/, generated from the TSDoc of everything lib/index.ts exports
 * (`npm run docs`), the way aws-cdk-lib documents its props: each type with its members' types,
 * defaults, meanings and examples, nested types linked. typedoc is not a dependency; the TypeScript
 * compiler reads the same comments. test/docs/reference.test.ts fails when docs/reference differs.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { alarmsSection } from './reference-alarms';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const REFERENCE_DIR = join(ROOT, 'docs', 'reference');

/** Which page documents the exports of which source files, in order. */
const PAGES = [
  {
    file: 'llm-rate-limiter.md',
    title: 'LlmRateLimiter and its props',
    intro: 'The construct, its props and what it exposes.',
    sources: ['lib/llm-rate-limiter.ts', 'lib/props.ts', 'lambda/gateway/api.ts'],
  },
  {
    file: 'upstream.md',
    title: 'Upstream',
    intro: 'Where the proxy sends requests (the `upstream` prop).',
    sources: ['lib/upstream.ts'],
  },
  {
    file: 'plans.md',
    title: 'Plans, limits and model prices',
    intro:
      'What the `plans`, `endpoints` and `globalLimits` props are made of, and the helpers that build them: ' +
      '[`requestsPerMinute`](#@@requestsPerMinute@@), [`requestsPerDay`](#@@requestsPerDay@@), ' +
      '[`tokensPerMinute`](#@@tokensPerMinute@@), [`tokensPerDay`](#@@tokensPerDay@@), [`usdPerDay`](#@@usdPerDay@@), ' +
      'calendar budgets [`usdPerMonth`](#@@usdPerMonth@@), [`usdPerWeek`](#@@usdPerWeek@@), ' +
      '[`usdPerCalendarDay`](#@@usdPerCalendarDay@@), [`tokensPerMonth`](#@@tokensPerMonth@@), ' +
      '[`tokensPerCalendarDay`](#@@tokensPerCalendarDay@@), ' +
      'and [`requests`](#@@requests@@), [`tokens`](#@@tokens@@), [`usd`](#@@usd@@) around any [bucket shape](limits.md); ' +
      "[`bedrockQuota`](#@@bedrockQuota@@) for Bedrock's own quota.",
    sources: ['lambda/engine/plans.ts', 'lib/bedrock-quota.ts'],
    /** What most readers came for, first within its kind. */
    lead: [
      'Plan',
      'LimitSpec',
      'EndpointConfig',
      'ModelPrice',
      'requestsPerMinute',
      'requestsPerDay',
      'tokensPerMinute',
      'tokensPerDay',
      'usdPerDay',
      'requests',
      'tokens',
      'usd',
      'bedrockQuota',
    ],
  },
  {
    file: 'limits.md',
    title: 'Bucket shapes',
    intro: 'The shapes a limit can take (README, "Bucket shapes"), and their factories.',
    sources: ['lambda/engine/limits.ts', 'lambda/engine/calendar.ts'],
  },
  {
    file: 'observability.md',
    title: 'Alarms, dashboard and the automatic brake',
    intro: 'The `alarms` and `automaticBrake` props, and the construct that creates what operators watch.',
    sources: ['lib/observability.ts'],
  },
  {
    file: 'building-blocks.md',
    title: 'Building blocks',
    intro: 'Constructs the limiter is made of, exported for stacks that assemble their own.',
    sources: ['lib/limits-table.ts', 'lib/limiter-function.ts'],
  },
  {
    file: 'errors.md',
    title: 'Errors',
    intro: 'What the library throws on purpose; every class sets `name` and takes `ErrorOptions` (for `cause`).',
    sources: ['lambda/engine/errors.ts'],
  },
] as const;

type Kind = 'class' | 'interface' | 'function' | 'type' | 'constant';
const KIND_ORDER: readonly Kind[] = ['class', 'interface', 'function', 'type', 'constant'];
const KIND_TITLE: Record<Kind, string> = {
  class: 'Classes',
  interface: 'Interfaces',
  function: 'Functions',
  type: 'Types',
  constant: 'Constants',
};

interface Entry {
  readonly name: string;
  readonly kind: Kind;
  readonly node: ts.Declaration;
  readonly symbol: ts.Symbol;
  readonly source: string;
  /** Set when the package does not export it by name: the public declaration that names it. */
  reachedFrom?: string;
}

/** GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces as -. */
export const slug = (heading: string): string =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');

/** Where a link to the heading `text` goes until the page's anchors are known (anchored resolves it). */
const anchorOf = (text: string) => `#@@${text}@@`;
const ANCHOR = /([\w-]+\.md)?#@@([^@]+)@@/g;

/**
 * The anchors GitHub gives a page's headings, by heading text: a heading's slug, numbered -1, -2, ...
 * when an earlier heading has the same (`BedrockQuota` and `bedrockQuota` both make bedrockquota).
 * Lines in fenced code are no headings; a heading's links and code count by their text.
 */
export function headingAnchors(markdown: string): Map<string, string> {
  const seen = new Map<string, number>();
  const byText = new Map<string, string>();
  const prose = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const [, heading] of prose.matchAll(/^#{1,6} (.+?)\s*$/gm)) {
    const base = slug(heading!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1'));
    const n = seen.get(base);
    seen.set(base, (n ?? -1) + 1);
    if (!byText.has(heading!)) byText.set(heading!, n === undefined ? base : `${base}-${n + 1}`);
  }
  return byText;
}

/** The pages with their links' anchors as GitHub makes them (headingAnchors). */
function anchored(files: Map<string, string>): Map<string, string> {
  const anchors = new Map<string, Map<string, string>>();
  for (const [file, text] of files) {
    const byText = headingAnchors(text);
    anchors.set(file, byText);
  }
  return new Map(
    [...files].map(([file, text]) => [
      file,
      text.replace(ANCHOR, (_m, page: string | undefined, heading: string) => {
        const anchor = anchors.get(page ?? file)?.get(heading);
        if (!anchor) throw new Error(`${file}: a link to ${page ?? ''}#${heading}, which is no heading`);
        return `${page ?? ''}#${anchor}`;
      }),
    ]),
  );
}

const isExported = (n: ts.Node) => ts.getCombinedModifierFlags(n as ts.Declaration) & ts.ModifierFlags.Export;
const isHidden = (n: ts.Node) =>
  (ts.getCombinedModifierFlags(n as ts.Declaration) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) !== 0 ||
  (ts.isPropertyDeclaration(n) && ts.isPrivateIdentifier(n.name));

function kindOf(node: ts.Node): Kind | undefined {
  if (ts.isClassDeclaration(node)) return 'class';
  if (ts.isInterfaceDeclaration(node)) return 'interface';
  if (ts.isTypeAliasDeclaration(node)) return 'type';
  if (ts.isFunctionDeclaration(node)) return 'function';
  if (ts.isVariableDeclaration(node))
    return node.initializer && ts.isArrowFunction(node.initializer) ? 'function' : 'constant';
  return undefined;
}

/** The reference as files (name -> markdown), and the gaps in the TSDoc it was made from. */
export function renderReference(): { files: Map<string, string>; problems: string[] } {
  const config = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, ts.sys as never);
  const program = ts.createProgram([join(ROOT, 'lib', 'index.ts')], config?.options ?? {});
  const checker = program.getTypeChecker();
  const problems: string[] = [];
  const index = checker.getSymbolAtLocation(program.getSourceFile(join(ROOT, 'lib', 'index.ts'))!)!;
  const resolve = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const local = (file: string) => !file.includes('/node_modules/') && file.startsWith(ROOT);

  const entries = new Map<string, Entry>();
  const add = (symbol: ts.Symbol, name: string, reachedFrom?: string) => {
    const node = symbol.declarations?.[0];
    const kind = node && kindOf(node);
    if (!node || !kind || entries.has(name)) return;
    const source = relative(ROOT, node.getSourceFile().fileName);
    entries.set(name, { name, kind, node, symbol, source, ...(reachedFrom ? { reachedFrom } : {}) });
  };
  // The construct's plan helpers (lib/plan-helpers.ts) wrap the engine's, which they document: the engine's are shown.
  const engineExports = new Map(
    ['lambda/engine/plans.ts', 'lambda/engine/limits.ts'].flatMap((file) =>
      checker
        .getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(join(ROOT, file))!)!)
        .map((s) => [s.name, s]),
    ),
  );
  for (const s of checker.getExportsOfModule(index)) {
    const declared = resolve(s).declarations?.[0]?.getSourceFile().fileName ?? '';
    const wrapped = declared.endsWith('lib/plan-helpers.ts') ? engineExports.get(s.name) : undefined;
    add(resolve(wrapped ?? s), s.name);
  }

  // Types the public declarations name but the index does not export (a construct's props): documented too.
  for (let grew = true; grew; ) {
    grew = false;
    for (const entry of [...entries.values()]) {
      const visit = (n: ts.Node) => {
        if (ts.isTypeReferenceNode(n) || ts.isExpressionWithTypeArguments(n)) {
          const at = ts.isTypeReferenceNode(n) ? n.typeName : n.expression;
          const target = checker.getSymbolAtLocation(at);
          const declared = target && resolve(target).declarations?.[0];
          if (target && declared && local(declared.getSourceFile().fileName) && isExported(declared)) {
            const before = entries.size;
            add(resolve(target), resolve(target).name, entry.name);
            grew ||= entries.size > before;
          }
        }
        if (!ts.isBlock(n) && !isHidden(n)) ts.forEachChild(n, visit);
      };
      ts.forEachChild(entry.node, visit);
    }
  }

  const pageOf = (entry: Entry) => {
    const page = PAGES.find((p) => (p.sources as readonly string[]).includes(entry.source));
    if (!page)
      throw new Error(`${entry.source} (${entry.name}) is on no page: add it to PAGES in scripts/reference-docs.ts`);
    return page.file;
  };
  const linkTo = (name: string, fromPage: string) => {
    const entry = entries.get(name);
    if (!entry) return undefined;
    const page = pageOf(entry);
    return `${page === fromPage ? '' : page}${anchorOf(name)}`;
  };

  /** Links for the types a node names: this reference's own, and aws-cdk-lib's API reference. */
  const linksIn = (node: ts.Node | undefined, page: string): Map<string, string> => {
    const links = new Map<string, string>();
    const visit = (n: ts.Node) => {
      if (ts.isTypeReferenceNode(n) || ts.isExpressionWithTypeArguments(n)) {
        const at = ts.isTypeReferenceNode(n) ? n.typeName : n.expression;
        const target = checker.getSymbolAtLocation(at);
        const real = target && resolve(target);
        const file = real?.declarations?.[0]?.getSourceFile().fileName ?? '';
        const own = real && linkTo(real.name, page);
        const cdk = /\/node_modules\/aws-cdk-lib\/([\w-]+)\//.exec(file)?.[1];
        if (own) links.set(at.getText(), own);
        else if (real && cdk) {
          const module = cdk === 'core' ? '' : `.${cdk.replace(/-/g, '_')}`;
          links.set(at.getText(), `https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib${module}.${real.name}.html`);
        } else if (real && file.includes('/node_modules/constructs/'))
          links.set(at.getText(), `https://docs.aws.amazon.com/cdk/api/v2/docs/constructs.${real.name}.html`);
      }
      ts.forEachChild(n, visit);
    };
    if (node) visit(node);
    return links;
  };

  /** A type as code, its named types linked; in a table cell | is escaped. */
  const typeText = (text: string, links: Map<string, string>, inTable: boolean): string => {
    const flat = text.replace(/\s+/g, ' ').trim();
    const parts: string[] = [];
    let code = '';
    const flush = () => {
      if (code) parts.push(`\`${inTable ? code.replace(/\|/g, '\\|') : code}\``);
      code = '';
    };
    for (const token of flat.match(/[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*|'[^']*'|"[^"]*"|[^A-Za-z_$'"]+/g) ?? []) {
      const link = links.get(token);
      if (link) {
        flush();
        parts.push(`[\`${token}\`](${link})`);
      } else code += token;
    }
    flush();
    return parts.join('');
  };

  /** The comment of a symbol, or of a function's signature (an arrow function's is on its variable). */
  const docOf = (of: ts.Symbol | ts.SignatureDeclaration | undefined) => {
    let text = '';
    let tags: ts.JSDocTagInfo[] = [];
    if (of && 'flags' in of && 'escapedName' in of) {
      text = ts.displayPartsToString(of.getDocumentationComment(checker));
      tags = of.getJsDocTags(checker);
    } else if (of) {
      const host = ts.isArrowFunction(of)
        ? checker.getSymbolAtLocation((of.parent as ts.VariableDeclaration).name)
        : undefined;
      const signature = checker.getSignatureFromDeclaration(of);
      text = ts.displayPartsToString(
        host ? host.getDocumentationComment(checker) : signature?.getDocumentationComment(checker),
      );
      tags = host ? host.getJsDocTags(checker) : (signature?.getJsDocTags() ?? []);
    }
    const tag = (name: string) =>
      tags.filter((t) => t.name === name).map((t) => ts.displayPartsToString(t.text).trim());
    return {
      text: text.trim(),
      default: tag('default')[0],
      examples: tag('example'),
      params: tag('param'),
      returns: tag('returns')[0],
    };
  };
  /** Prose from TSDoc: a docs/ file it names becomes a link, and so does a {@link Name} or {@link Name.member}. */
  const prose = (text: string, page: string) =>
    text
      // < outside code would open an HTML tag on GitHub.
      .split(/(`[^`]*`)/)
      .map((part, i) => (i % 2 ? part : part.replace(/</g, '&lt;')))
      .join('')
      .replace(/(?<!\]\(|[[/\w])docs\/([\w-]+\.md)\b/g, '[docs/$1](../$1)')
      .replace(/\{@link\s+([\w$]+)(?:\.([\w$]+))?\s*\}/g, (_m, name: string, member?: string) => {
        const target = linkTo(name, page);
        const shown = `\`${member ? `${name}.${member}` : name}\``;
        if (!target) return shown;
        return `[${shown}](${member ? `${target.replace(/#.*/, '')}${anchorOf(`${name}.${member}`)}` : target})`;
      });
  const summary = (text: string, page: string) => {
    const first = text.split(/\n\s*\n/)[0]!.replace(/\s+/g, ' ');
    // The first sentence: a stop before a capital or the end (not e.g., i.e. or ...).
    const sentence = /^(.+?(?<!\be\.g|\bi\.e|\.\.)[.!?])(?=\s+[A-Z]|$)/.exec(first)?.[1] ?? first;
    return prose(sentence, page).replace(/\|/g, '\\|');
  };
  const cell = (text: string, page: string) => prose(text.replace(/\s+/g, ' '), page).replace(/\|/g, '\\|');
  const isJson = (text: string) => {
    try {
      return typeof JSON.parse(text) === 'object';
    } catch {
      return false;
    }
  };
  const example = (text: string) =>
    text.includes('```') ? text : `\`\`\`${isJson(text) ? 'json' : 'ts'}\n${text}\n\`\`\``;
  /** A default as a reader wants it: `- words` is prose, a leading literal (`8`, `'live'`, `true`) is code. */
  const defaultText = (text: string | undefined) =>
    text === undefined
      ? ''
      : text
          .replace(/^-\s*/, '')
          .replace(/\s+/g, ' ')
          .trim()
          .replace(/^('[^']*'|true|false|\d[\d_]*)(?=\s|$)/, '`$1`') || 'none';

  interface Member {
    readonly name: string;
    readonly optional: boolean;
    readonly type: string;
    readonly typeNode?: ts.Node;
    readonly symbol?: ts.Symbol;
    readonly isStatic?: boolean;
    readonly signature?: ts.SignatureDeclaration;
  }

  const membersOf = (node: ts.Declaration): Member[] => {
    const members: Member[] = [];
    const children = ts.isInterfaceDeclaration(node) || ts.isClassDeclaration(node) ? node.members : [];
    for (const m of children) {
      if (isHidden(m) || !m.name) continue;
      const symbol = checker.getSymbolAtLocation(m.name);
      const name = m.name.getText();
      const isStatic = (ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Static) !== 0;
      if (ts.isPropertySignature(m) || ts.isPropertyDeclaration(m)) {
        const type = m.type?.getText() ?? checker.typeToString(checker.getTypeAtLocation(m));
        members.push({ name, optional: !!m.questionToken, type, typeNode: m.type, symbol, isStatic });
      } else if (ts.isMethodDeclaration(m) || ts.isMethodSignature(m))
        members.push({ name, optional: false, type: '', symbol, isStatic, signature: m });
    }
    const ctor = ts.isClassDeclaration(node) ? node.members.find(ts.isConstructorDeclaration) : undefined;
    for (const p of ctor?.parameters ?? []) {
      const flags = ts.getCombinedModifierFlags(p);
      if (!(flags & (ts.ModifierFlags.Readonly | ts.ModifierFlags.Public)) || flags & ts.ModifierFlags.Private)
        continue;
      const symbol = checker.getSymbolAtLocation(p.name);
      members.push({
        name: p.name.getText(),
        optional: false,
        type: p.type?.getText() ?? '',
        typeNode: p.type,
        symbol,
      });
    }
    return members;
  };

  const signatureOf = (name: string, sig: ts.SignatureDeclaration) => {
    const params = sig.parameters.map(
      (p) => `${p.name.getText()}${p.questionToken || p.initializer ? '?' : ''}: ${p.type?.getText() ?? 'unknown'}`,
    );
    const returns = sig.type ? `: ${sig.type.getText()}` : '';
    return `${name}(${params.join(', ')})${returns}`;
  };

  const paramsTable = (sig: ts.SignatureDeclaration, said: readonly string[], page: string): string[] => {
    if (!sig.parameters.length) return [];
    const out = ['| parameter | type | meaning |', '| --- | --- | --- |'];
    for (const p of sig.parameters) {
      const name = p.name.getText();
      const tag = said.find((t) => t.split(/\s/)[0] === name);
      const meaning = tag ? tag.slice(name.length).replace(/^\s*-?\s*/, '') : (CONSTRUCT_PARAMS[name] ?? '');
      if (!meaning) problems.push(`${signatureOf('', sig)}: parameter ${name} has no @param`);
      const optional = p.questionToken || p.initializer ? ' (optional)' : '';
      const type = typeText(p.type?.getText() ?? '', linksIn(p.type, page), true);
      out.push(`| \`${name}\`${optional} | ${type} | ${cell(meaning, page)} |`);
    }
    return [...out, ''];
  };

  const renderSignature = (owner: string, name: string, sig: ts.SignatureDeclaration, page: string) => {
    const doc = docOf(sig);
    const out = ['```ts', signatureOf(name, sig), '```', ''];
    if (doc.text) out.push(prose(doc.text, page), '');
    else problems.push(`${owner}: no description`);
    out.push(...paramsTable(sig, doc.params, page));
    if (sig.type) {
      const returns = doc.returns ? `: ${prose(doc.returns, page)}` : '';
      out.push(`Returns ${typeText(sig.type.getText(), linksIn(sig.type, page), false)}${returns}`, '');
    }
    for (const e of doc.examples) out.push(example(e), '');
    return out;
  };

  const renderMembers = (entry: Entry, page: string): string[] => {
    const members = membersOf(entry.node);
    const properties = members.filter((m) => !m.signature);
    const methods = members.filter((m) => m.signature);
    const out: string[] = [];
    const heading = (m: Member) => `${entry.name}.${m.name}`;
    const isInterface = entry.kind === 'interface';
    if (properties.length) {
      out.push(isInterface ? '| prop | type | default | meaning |' : '| property | type | meaning |');
      out.push(isInterface ? '| --- | --- | --- | --- |' : '| --- | --- | --- |');
      for (const m of properties) {
        const doc = docOf(m.symbol);
        const name = `[\`${m.name}\`](${anchorOf(heading(m))})`;
        const type = typeText(m.type, linksIn(m.typeNode, page), true);
        const dflt = m.optional ? cell(defaultText(doc.default), page) || '—' : '*required*';
        out.push(
          isInterface
            ? `| ${name} | ${type} | ${dflt} | ${summary(doc.text, page)} |`
            : `| ${name} | ${type} | ${summary(doc.text, page)} |`,
        );
      }
      out.push('');
    }
    for (const m of properties) {
      const doc = docOf(m.symbol);
      if (!doc.text) problems.push(`${heading(m)}: no description`);
      if (isInterface && m.optional && doc.default === undefined)
        problems.push(`${heading(m)}: optional, and no @default`);
      if (EXAMPLES_FOR.includes(entry.name) && !TRIVIAL_TYPE.test(m.type) && !doc.examples.length)
        problems.push(`${heading(m)}: of type ${m.type}, and no @example`);
      out.push(`#### ${heading(m)}`, '');
      out.push(`- *Type:* ${typeText(m.type, linksIn(m.typeNode, page), false)}`);
      if (isInterface)
        out.push(m.optional ? `- *Default:* ${prose(defaultText(doc.default), page) || '—'}` : '- *Required*');
      out.push('');
      if (doc.text) out.push(prose(doc.text, page), '');
      for (const e of doc.examples) out.push(example(e), '');
    }
    for (const m of methods) {
      out.push(`#### ${heading(m)}`, '');
      out.push(...renderSignature(heading(m), `${m.isStatic ? `${entry.name}.` : ''}${m.name}`, m.signature!, page));
    }
    return out;
  };

  const renderEntry = (entry: Entry, page: string): string[] => {
    const doc = docOf(entry.symbol);
    const out = [`### ${entry.name}`, ''];
    const where = entry.reachedFrom
      ? `Not exported by name: the type of a member of [\`${entry.reachedFrom}\`](${linkTo(entry.reachedFrom, page)}).`
      : `\`import ${entry.kind === 'interface' || entry.kind === 'type' ? 'type ' : ''}{ ${entry.name} } from 'llm-rate-limiter';\``;
    out.push(`*${entry.kind}* · ${where} · source: \`${entry.source}\``, '');
    const node = entry.node;
    if (ts.isClassDeclaration(node) || ts.isInterfaceDeclaration(node)) {
      const heritage = node.heritageClauses?.flatMap((h) => h.types) ?? [];
      if (heritage.length)
        out.push(`Extends ${heritage.map((h) => typeText(h.getText(), linksIn(h, page), false)).join(', ')}.`, '');
    }
    if (entry.kind === 'function') {
      const sig = ts.isFunctionDeclaration(node)
        ? node
        : ((node as ts.VariableDeclaration).initializer as ts.ArrowFunction);
      out.push(...renderSignature(entry.name, entry.name, sig, page));
      return out;
    }
    if (doc.text) out.push(prose(doc.text, page), '');
    else problems.push(`${entry.name}: no description`);
    if (ts.isTypeAliasDeclaration(node)) {
      const written = node.type.getText();
      const shown = /typeof|\[/.test(written)
        ? checker.typeToString(checker.getTypeAtLocation(node), undefined, ts.TypeFormatFlags.NoTruncation)
        : written;
      out.push(`*Type:* ${typeText(shown, linksIn(node.type, page), false)}`, '');
    }
    if (ts.isVariableDeclaration(node)) {
      const type = node.type?.getText() ?? checker.typeToString(checker.getTypeAtLocation(node));
      out.push(`*Type:* ${typeText(type, linksIn(node.type, page), false)}`, '');
      const value = node.initializer?.getText().replace(/\s+/g, ' ');
      if (value && value.length <= 200) out.push('```ts', `${entry.name} = ${value}`, '```', '');
    }
    if (ts.isClassDeclaration(node)) {
      const ctor = node.members.find(ts.isConstructorDeclaration);
      if (ctor && !isHidden(ctor)) {
        out.push(`#### new ${entry.name}`, '', '```ts', signatureOf(`new ${entry.name}`, ctor), '```', '');
        out.push(...paramsTable(ctor, docOf(ctor).params, page));
      }
    }
    for (const e of doc.examples) out.push(example(e), '');
    out.push(...renderMembers(entry, page));
    if (entry.name === 'LimiterAlarms')
      out.push(...alarmsSection(entry.node as ts.InterfaceDeclaration, checker, problems));
    return out;
  };

  const files = new Map<string, string>();
  const byPage = new Map<string, Entry[]>();
  for (const entry of entries.values()) byPage.set(pageOf(entry), [...(byPage.get(pageOf(entry)) ?? []), entry]);
  const indexRows: string[] = [];
  for (const page of PAGES) {
    const lead: readonly string[] = 'lead' in page ? page.lead : [];
    const rank = (e: Entry) => (lead.includes(e.name) ? lead.indexOf(e.name) : lead.length);
    const onPage = (byPage.get(page.file) ?? []).sort(
      (a, b) =>
        KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) ||
        rank(a) - rank(b) ||
        page.sources.indexOf(a.source as never) - page.sources.indexOf(b.source as never) ||
        a.node.getStart() - b.node.getStart(),
    );
    const out = [`# ${page.title}`, '', page.intro, '', GENERATED, ''];
    indexRows.push('', `## [${page.title}](${page.file})`, '', '| name | kind | meaning |', '| --- | --- | --- |');
    for (const kind of KIND_ORDER) {
      const ofKind = onPage.filter((e) => e.kind === kind);
      if (!ofKind.length) continue;
      out.push(`## ${KIND_TITLE[kind]}`, '');
      for (const entry of ofKind) {
        out.push(...renderEntry(entry, page.file));
        indexRows.push(
          `| [\`${entry.name}\`](${page.file}${anchorOf(entry.name)}) | ${kind} | ${summary(docOf(entry.symbol).text, 'README.md')} |`,
        );
      }
    }
    const text = out.join('\n').replace(/\n{3,}/g, '\n\n');
    files.set(page.file, `${text.trimEnd()}\n`);
  }
  const readme = [
    '# API reference',
    '',
    "Every name the package exports (`import { ... } from 'llm-rate-limiter'`), with its type, default,",
    'meaning and examples, generated from the TSDoc in the source. The README shows how they fit together.',
    '',
    GENERATED,
    ...indexRows,
  ];
  files.set('README.md', `${readme.join('\n')}\n`);
  return { files: anchored(files), problems };
}

/** The props whose members each need an @example unless their type says it all (TRIVIAL_TYPE). */
const EXAMPLES_FOR = ['LlmRateLimiterProps'];
/** A number, a boolean, a string, or a choice of literals: a type that needs no example. */
const TRIVIAL_TYPE = /^(number|boolean|string|false|true|'[^']*')( \| (number|boolean|string|false|true|'[^']*'))*$/;

/** What a construct's first two parameters are, as aws-cdk-lib says it. */
const CONSTRUCT_PARAMS: Record<string, string> = {
  scope: 'The parent construct.',
  id: "The construct's id, unique within its scope.",
};

const GENERATED =
  '<!-- Generated from the TSDoc by `npm run docs` (scripts/reference-docs.ts): edit the source, not this file. -->';

/** Writes the reference into `dir`, replacing the markdown files there. */
export function writeReference(dir: string): string[] {
  const { files, problems } = renderReference();
  mkdirSync(dir, { recursive: true });
  for (const old of readdirSync(dir)) if (old.endsWith('.md') && !files.has(old)) rmSync(join(dir, old));
  for (const [file, text] of files) writeFileSync(join(dir, file), text);
  return problems;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const problems = writeReference(process.argv[2] ?? REFERENCE_DIR);
  console.log(`wrote ${relative(process.cwd(), process.argv[2] ?? REFERENCE_DIR)}/`);
  if (problems.length) {
    console.error(`${problems.length} gaps in the TSDoc:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exitCode = 1;
  }
}
