import { PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';

/** The part of a CloudWatch alarm's Lambda action event this reads. */
export interface AlarmEvent {
  readonly alarmData?: {
    readonly alarmName?: string;
    readonly state?: { readonly value?: string; readonly reason?: string };
  };
}

export interface AutoBrakeDeps {
  readonly ssm: SSMClient;
  readonly parameterName: string;
  readonly brakeForSeconds: number;
  readonly clock?: () => number;
  readonly log: (entry: Record<string, unknown>) => void;
}

/**
 * Sets the brake when the spend alarm fires: enabled, with the alarm as the reason and an end
 * `brakeForSeconds` away. Releasing stays with the operators (or the end). Other states do nothing.
 */
export async function autoBrake(event: AlarmEvent, deps: AutoBrakeDeps): Promise<{ braked: boolean }> {
  if (event.alarmData?.state?.value !== 'ALARM') {
    deps.log({ outcome: 'ignored', state: event.alarmData?.state?.value ?? 'unknown' });
    return { braked: false };
  }
  const until = new Date((deps.clock ?? Date.now)() + deps.brakeForSeconds * 1000).toISOString();
  const value = { enabled: true, reason: `automatic: ${event.alarmData.alarmName ?? 'spend alarm'} fired`, until };
  await deps.ssm.send(
    new PutParameterCommand({
      Name: deps.parameterName,
      Value: JSON.stringify(value),
      Type: 'String',
      Overwrite: true,
    }),
  );
  deps.log({ level: 'warn', outcome: 'braked', until, alarm: event.alarmData.alarmName });
  return { braked: true };
}
