/**
 * The environment a function gets in Lambda, pointed at local endpoints, for building handlers
 * the way Lambda does (depsFromEnvironment and friends) against local or fault-injecting services.
 */
export function localFunctionEnvironment(o: {
  tableName: string;
  brakeParameterName: string;
  config: unknown;
  dynamoEndpoint: string;
  ssmEndpoint: string;
}): Record<string, string> {
  return {
    TABLE_NAME: o.tableName,
    BRAKE_PARAMETER_NAME: o.brakeParameterName,
    BRAKE_CACHE_TTL_SECONDS: '0',
    LIMITER_CONFIG: JSON.stringify(o.config),
    LIMITER_LOG: 'off',
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
    AWS_ENDPOINT_URL_DYNAMODB: o.dynamoEndpoint,
    AWS_ENDPOINT_URL_SSM: o.ssmEndpoint,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: o.ssmEndpoint,
    AWS_ENDPOINT_URL_EVENTBRIDGE: o.ssmEndpoint,
  };
}
