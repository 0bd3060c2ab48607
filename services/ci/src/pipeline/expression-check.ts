// Static checks of an expression where it is written: the contexts it may read there, the
// matrix keys and `github` properties that exist, status functions only in `if`, hashFiles()
// only in cache keys. Run by parse.ts on every expression of a pipeline file.
import { didYouMean } from './did-you-mean.js'
import {
  CONTEXTS, ExpressionError, GITHUB_PROPERTIES, STATUS_FUNCTIONS, formatString,
  type ContextName, type Expression, type Node,
} from './expression-syntax.js'

/** What an expression may use where it is written. */
export interface ExpressionRules {
  contexts: readonly ContextName[]
  /** success(), failure(), always(), cancelled(): only in `if`. */
  status?: boolean
  hashFiles?: boolean
  /** The job's matrix keys (undefined: the job has no matrix). */
  matrixKeys?: ReadonlySet<string>
  /** The jobs named in `needs` (for needs.<job>.result). */
  needs?: ReadonlySet<string>
}

/** Problems an expression would have where it is written: names, contexts, functions. */
export function checkExpression(expr: Expression, rules: ExpressionRules): ExpressionError[] {
  const out: ExpressionError[] = []
  const visit = (n: Node): void => {
    switch (n.kind) {
      case 'literal':
        return
      case 'name':
        checkName(n, undefined, rules, out)
        return
      case 'property':
        if (n.object.kind === 'name') checkName(n.object, n, rules, out)
        else visit(n.object)
        return
      case 'index':
        visit(n.object)
        visit(n.key)
        return
      case 'not':
        visit(n.operand)
        return
      case 'binary':
        visit(n.left)
        visit(n.right)
        return
      case 'call':
        if (STATUS_FUNCTIONS.has(n.name) && !rules.status) {
          out.push(new ExpressionError(n.index, `${n.name}() can only be used in if`))
        }
        if (n.name === 'hashFiles' && !rules.hashFiles) {
          out.push(new ExpressionError(n.index, 'hashFiles() can only be used in cache.key'))
        }
        n.args.forEach(visit)
        if (n.name === 'format' && n.args[0].kind === 'literal' && typeof n.args[0].value === 'string') {
          try {
            formatString(n.args[0].value, n.args.slice(1).map(() => ''), n.args[0].index)
          } catch (e) {
            out.push(e as ExpressionError)
          }
        }
        return
    }
  }
  visit(expr.ast)
  return out
}

function checkName(n: Extract<Node, { kind: 'name' }>, prop: Extract<Node, { kind: 'property' }> | undefined, rules: ExpressionRules, out: ExpressionError[]): void {
  const name = n.name as ContextName
  if (!(CONTEXTS as readonly string[]).includes(name)) {
    out.push(new ExpressionError(n.index, `unknown name "${n.name}"${didYouMean(n.name, rules.contexts)} (contexts here: ${rules.contexts.join(', ')})`))
    return
  }
  if (!rules.contexts.includes(name)) {
    const why = name === 'secrets'
      ? 'secrets can only be a whole env value (env: { TOKEN: ${{ secrets.NAME }} }) or listed in secrets: [NAME]'
      : `${name} is not available here (contexts here: ${rules.contexts.join(', ')})`
    out.push(new ExpressionError(n.index, why))
    return
  }
  if (!prop) return
  if (name === 'github' && !(GITHUB_PROPERTIES as readonly string[]).includes(prop.name)) {
    out.push(new ExpressionError(prop.index, `github has no property "${prop.name}"${didYouMean(prop.name, GITHUB_PROPERTIES)}`))
  }
  if (name === 'matrix') {
    if (!rules.matrixKeys) out.push(new ExpressionError(n.index, 'this job has no matrix'))
    else if (!rules.matrixKeys.has(prop.name)) {
      out.push(new ExpressionError(prop.index, `the matrix has no "${prop.name}"${didYouMean(prop.name, rules.matrixKeys)} (it has ${[...rules.matrixKeys].join(', ')})`))
    }
  }
  if (name === 'needs' && rules.needs && !rules.needs.has(prop.name)) {
    out.push(new ExpressionError(prop.index, `"${prop.name}" is not in this job's needs${didYouMean(prop.name, rules.needs)}`))
  }
}

/** Whether the expression calls success(), failure(), always() or cancelled(). */
