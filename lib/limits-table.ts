import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, Table } from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { LEDGER_TABLE, TABLE } from '../lambda/engine/constants';

/** Props of {@link LimitsTable}. */
export interface LimitsTableProps {
  /**
   * What happens to the table (and every bucket, key and tenant in it) when it leaves the stack.
   * @default RemovalPolicy.RETAIN - the table outlives the stack
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The one DynamoDB table the limiter keeps its state in: string partition key, TTL, on-demand,
 * point-in-time recovery. Key schema and TTL attribute come from the same constants the engine
 * and the tests use.
 */
export class LimitsTable extends Construct {
  /** The table. */
  readonly table: Table;

  /**
   * @param scope - the parent construct
   * @param id - the construct's id, unique within its scope
   * @param props - what happens to the table when it leaves the stack
   */
  constructor(scope: Construct, id: string, props: LimitsTableProps = {}) {
    super(scope, id);
    this.table = stateTable(this, TABLE, props.removalPolicy);
  }
}

/**
 * The usage ledger's table (lambda/engine/ledger.ts): rows per tenant x user x model x day, a
 * string partition and sort key, TTL, on-demand, point-in-time recovery, kept with the stack's
 * removal policy like the limits table.
 */
export class LedgerTable extends Construct {
  /** The table. */
  readonly table: Table;

  /**
   * @param scope - the parent construct
   * @param id - the construct's id, unique within its scope
   * @param props - what happens to the table when it leaves the stack
   */
  constructor(scope: Construct, id: string, props: LimitsTableProps = {}) {
    super(scope, id);
    this.table = stateTable(this, LEDGER_TABLE, props.removalPolicy);
  }
}

/** An on-demand table with point-in-time recovery and TTL, kept (and protected from deletion) unless told otherwise. */
function stateTable(
  scope: Construct,
  keys: { readonly partitionKey: string; readonly sortKey?: string; readonly ttlAttribute: string },
  removalPolicy = RemovalPolicy.RETAIN,
): Table {
  return new Table(scope, 'Table', {
    partitionKey: { name: keys.partitionKey, type: AttributeType.STRING },
    ...(keys.sortKey ? { sortKey: { name: keys.sortKey, type: AttributeType.STRING } } : {}),
    timeToLiveAttribute: keys.ttlAttribute,
    billingMode: BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    removalPolicy,
    // A table the stack keeps is one nobody should delete by accident either.
    deletionProtection: removalPolicy === RemovalPolicy.RETAIN,
  });
}
