/** Base class of every error the limit engine raises on purpose. */
export class LimiterError extends Error {
  /**
   * @param message - what went wrong
   * @param options - its `cause`
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LimiterError';
  }
}

/** A limit definition that cannot work (negative rate, zero capacity, ...). */
export class InvalidLimitError extends LimiterError {
  /**
   * @param message - what went wrong
   * @param options - its `cause`
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InvalidLimitError';
  }
}

/** A cost or adjustment that is not a finite, positive number. */
export class InvalidCostError extends LimiterError {
  /**
   * @param message - what went wrong
   * @param options - its `cause`
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'InvalidCostError';
  }
}

/** DynamoDB could not be reached or answered with an error other than a failed condition. */
export class StoreUnavailableError extends LimiterError {
  /** The store operation that failed. */
  readonly operation: string;
  /** The item it was on. */
  readonly bucketKey: string;
  /**
   * @param operation - the store operation that failed
   * @param bucketKey - the item it was on
   * @param options - the SDK's error, as `cause`
   */
  constructor(operation: string, bucketKey: string, options?: ErrorOptions) {
    const cause = options?.cause instanceof Error ? `${options.cause.name}: ${options.cause.message}` : 'unknown error';
    super(`limit store ${operation} on bucket ${bucketKey} failed: ${cause}`, options);
    this.name = 'StoreUnavailableError';
    this.operation = operation;
    this.bucketKey = bucketKey;
  }
}

/**
 * DynamoDB refused the item's writes past its throughput (ProvisionedThroughputExceeded,
 * ThrottlingException, RequestLimitExceeded, or a transaction cancelled for throttling) after the
 * SDK's retries: one item takes at most 1,000 write units a second. For the limiter this is the
 * caller's traffic being more than its item carries, not an outage.
 */
export class ItemThrottledError extends StoreUnavailableError {
  /**
   * @param operation - the store operation that was throttled
   * @param bucketKey - the item it was on
   * @param options - the SDK's error, as `cause`
   */
  constructor(operation: string, bucketKey: string, options?: ErrorOptions) {
    super(operation, bucketKey, options);
    this.name = 'ItemThrottledError';
  }
}

/** Every attempt lost a race with another writer; the decision was not made. */
export class ContentionError extends LimiterError {
  /** The item the writers raced on. */
  readonly bucketKey: string;
  /** How many attempts lost. */
  readonly attempts: number;
  /**
   * @param bucketKey - the item the writers raced on
   * @param attempts - how many attempts lost
   */
  constructor(bucketKey: string, attempts: number) {
    super(`limit store gave up on bucket ${bucketKey} after ${attempts} conflicting attempts`);
    this.name = 'ContentionError';
    this.bucketKey = bucketKey;
    this.attempts = attempts;
  }
}

/** A layer whose failure mode is closed could not be decided: the request must not pass. */
export class LayerUnavailableError extends LimiterError {
  /** The layer that could not be checked. */
  readonly layer: string;
  /**
   * @param layer - the layer that could not be checked
   * @param options - the store's error, as `cause`
   */
  constructor(layer: string, options?: ErrorOptions) {
    super(`the ${layer} layer's limits could not be checked and its failure mode is closed`, options);
    this.name = 'LayerUnavailableError';
    this.layer = layer;
  }
}

/** A tenant names a plan the configuration does not have: denied, fail closed. */
export class UnknownPlanError extends LimiterError {
  /** The tenant whose item names the plan. */
  readonly tenant: string;
  /** The plan it names. */
  readonly plan: string;
  /**
   * @param tenant - the tenant whose item names the plan
   * @param plan - the plan it names
   */
  constructor(tenant: string, plan: string) {
    super(`tenant ${tenant} names plan '${plan}', which is not configured`);
    this.name = 'UnknownPlanError';
    this.tenant = tenant;
    this.plan = plan;
  }
}
