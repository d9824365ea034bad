/**
 * typedoc as aws-cdk-lib documents props: `@default - words` is prose and any other `@default` is code
 * (jsii's convention), shown in the props table's default column (typedoc-plugin-markdown fills it
 * from `@defaultValue`), where a required prop says so and a class's properties have none; aws-cdk-lib's
 * and constructs' types link to their AWS API reference.
 */
import { CommentTag, Converter, ReflectionKind } from 'typedoc';

const CDK_DOCS = 'https://docs.aws.amazon.com/cdk/api/v2/docs';

/** `@default - words` without its dash; a default written without code becomes code. */
function cdkDefault(tag) {
  const [first, ...rest] = tag.content;
  if (first?.kind === 'text' && /^-\s/.test(first.text)) return [{ ...first, text: first.text.slice(2) }, ...rest];
  if (tag.content.some((part) => part.kind !== 'text')) return tag.content;
  const text = tag.content.map((part) => part.text).join('');
  return [{ kind: 'code', text: `\`${text.replace(/\s+/g, ' ').trim()}\`` }];
}

/** The AWS page of an aws-cdk-lib or constructs type, from the file that declares it. */
function cdkLink(symbolId) {
  const name = symbolId?.qualifiedName;
  if (!name || name.includes('.')) return undefined;
  if (symbolId.packageName === 'constructs') return `${CDK_DOCS}/constructs.${name}.html`;
  if (symbolId.packageName !== 'aws-cdk-lib') return undefined;
  const module = /^(aws-[\w-]+)\//.exec(symbolId.packagePath)?.[1];
  return `${CDK_DOCS}/aws-cdk-lib${module ? `.${module.replace(/-/g, '_')}` : ''}.${name}.html`;
}

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(Converter.EVENT_RESOLVE_BEGIN, (context) => {
    for (const reflection of Object.values(context.project.reflections)) {
      const comments = [reflection.comment, ...(reflection.signatures ?? []).map((s) => s.comment)];
      for (const tag of comments.flatMap((c) => c?.blockTags ?? [])) {
        if (tag.tag !== '@default') continue;
        tag.tag = '@defaultValue';
        tag.content = cdkDefault(tag);
      }
      const required = reflection.kindOf(ReflectionKind.Property) && !reflection.flags.isOptional;
      // A construct's property is set by its constructor: its initializer (`alarms = []`) is no default a user sets.
      if (reflection.kindOf(ReflectionKind.Property) && reflection.parent?.kindOf(ReflectionKind.Class))
        delete reflection.defaultValue;
      const inType = reflection.parent?.kindOf(ReflectionKind.Interface | ReflectionKind.TypeLiteral);
      if (required && inType && !reflection.comment?.getTag('@defaultValue'))
        reflection.comment?.blockTags.push(new CommentTag('@defaultValue', [{ kind: 'text', text: '*required*' }]));
    }
  });
  app.converter.addUnknownSymbolResolver((_ref, _reflection, _part, symbolId) => cdkLink(symbolId));
}
