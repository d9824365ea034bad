/**
 * docs/reference is what `npm run docs` (typedoc with typedoc.json, then the alarms page) makes of the
 * TSDoc as it is now: a prop documented or changed in the source without regenerating fails here, and
 * so does a public name, member or parameter left without a meaning (typedoc's own validation), an
 * optional prop without its `@default`, or a non-trivial prop of LlmRateLimiterProps without an example.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Application,
  ArgumentsReader,
  type DeclarationReflection,
  Logger,
  LogLevel,
  PackageJsonReader,
  type ProjectReflection,
  type Reflection,
  ReflectionKind,
  type SomeType,
  TSConfigReader,
  TypeDocReader,
} from 'typedoc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alarmRows, alarmsPage } from '../../scripts/reference-alarms';

const REFERENCE_DIR = join(process.cwd(), 'docs', 'reference');

/** Every file under `dir`, by its path inside it, with its text. */
function filesIn(dir: string): Map<string, string> {
  const names = readdirSync(dir, { recursive: true, encoding: 'utf8' });
  return new Map(
    names
      .filter((name) => name.endsWith('.md'))
      .sort()
      .map((name) => [name, readFileSync(join(dir, name), 'utf8')]),
  );
}

/** typedoc's warnings and errors, kept instead of printed. */
class Collecting extends Logger {
  readonly said: string[] = [];
  override log(message: string, level: LogLevel): void {
    if (level >= LogLevel.Warn) this.said.push(message);
  }
}

/** A type that says it all: a number, a boolean, a string, a literal, or a choice of those. */
const isTrivial = (type: SomeType | undefined): boolean =>
  type?.type === 'intrinsic' || type?.type === 'literal' || (type?.type === 'union' && type.types.every(isTrivial));

const tagText = (reflection: DeclarationReflection, tag: `@${string}`) =>
  reflection.comment
    ?.getTag(tag)
    ?.content.map((part) => part.text)
    .join('')
    .trim();

describe('docs/reference', () => {
  let generated: string;
  let project: ProjectReflection;
  let said: string[];
  beforeAll(async () => {
    generated = mkdtempSync(join(tmpdir(), 'reference-'));
    const app = await Application.bootstrapWithPlugins({}, [
      new TypeDocReader(),
      new PackageJsonReader(),
      new TSConfigReader(),
      new ArgumentsReader(300, ['--out', generated]),
    ]);
    const logger = new Collecting();
    app.logger = logger;
    const converted = await app.convert();
    if (!converted) throw new Error(`typedoc could not convert lib/index.ts:\n${logger.said.join('\n')}`);
    project = converted;
    app.validate(project);
    await app.generateOutputs(project);
    writeFileSync(join(generated, 'alarms.md'), alarmsPage());
    said = logger.said;
  }, 300_000);
  afterAll(() => rmSync(generated, { recursive: true, force: true }));

  it('is what npm run docs generates from the code', () => {
    const committed = filesIn(REFERENCE_DIR);
    const fresh = filesIn(generated);
    const files = [...new Set([...committed.keys(), ...fresh.keys()])].sort();
    const stale = files.filter((f) => committed.get(f) !== fresh.get(f));
    expect(
      stale,
      `docs/reference/ differs from the TSDoc in ${stale.join(', ')}: run \`npm run docs\` and commit it`,
    ).toEqual([]);
  });

  it('gives every exported name, member and parameter a meaning, and documents every type it names', () => {
    expect(said, 'fill these in the TSDoc (or export the type), then run `npm run docs`').toEqual([]);
    // typedoc counts a comment with tags only (`/** @default 8 */`) as documentation; a reader does not.
    // A constructor says what it takes (its parameters, checked), a member inherited from Error or Construct is theirs.
    const inherited = (r: Reflection | undefined) => !!r && 'inheritedFrom' in r && !!r.inheritedFrom;
    const tagsOnly = Object.values(project.reflections)
      .filter((r) => !r.kindOf(ReflectionKind.Constructor | ReflectionKind.ConstructorSignature))
      .filter((r) => !inherited(r) && !inherited(r.parent))
      .filter(
        (r) =>
          r.comment &&
          !r.comment.summary
            .map((part) => part.text)
            .join('')
            .trim(),
      )
      .map((r) => r.getFriendlyFullName());
    expect(tagsOnly, 'say what these are, not only their tags').toEqual([]);
  });

  it('gives every optional prop its @default', () => {
    const props = project.getReflectionsByKind(ReflectionKind.Property) as DeclarationReflection[];
    const inTypes = props.filter((p) => p.parent?.kindOf(ReflectionKind.Interface | ReflectionKind.TypeLiteral));
    expect(inTypes.length).toBeGreaterThan(100);
    const missing = inTypes
      .filter((p) => p.flags.isOptional && tagText(p, '@defaultValue') === undefined)
      .map((p) => p.getFriendlyFullName());
    expect(missing, 'an optional prop needs `@default` (`@default - words` when it is a behaviour)').toEqual([]);
  });

  it('gives every prop of LlmRateLimiterProps whose type is more than a number, boolean, string or literal an @example', () => {
    const props = project.getChildByName('LlmRateLimiterProps') as DeclarationReflection;
    const members = props.children ?? [];
    expect(members.filter((m) => !isTrivial(m.type)).length).toBeGreaterThan(10);
    const missing = members
      .filter((m) => !isTrivial(m.type) && !m.comment?.getTag('@example'))
      .map((m) => `${m.name}: ${m.type?.toString()}`);
    expect(missing, 'add an @example to these props').toEqual([]);
  });

  it("says each alarm's default threshold in LimiterAlarms, and has a key there for each alarm and no other", () => {
    const alarms = project.getChildByName('LimiterAlarms') as DeclarationReflection;
    const keys = new Map((alarms.children ?? []).map((m) => [m.name, m]));
    const rows = alarmRows();
    expect([...keys.keys()].sort()).toEqual(rows.map((r) => r.prop).sort());
    const wrong = rows
      .map((row) => {
        const key = keys.get(row.prop)!;
        const onOff = key.type?.toString() === 'boolean';
        return { prop: row.prop, said: tagText(key, '@defaultValue'), expected: `\`${onOff ? true : row.threshold}\`` };
      })
      .filter((r) => r.said !== r.expected);
    expect(wrong, "LimiterAlarms' @default must be the alarm's default in ALARMS (true for an on/off alarm)").toEqual(
      [],
    );
  });
});
