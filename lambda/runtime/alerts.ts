/**
 * Budget alerts as EventBridge events on the account's default bus (or ALERT_EVENT_BUS), one per
 * threshold per period (lambda/engine/alerts.ts decides which and claims each once). The event:
 * source `llm-rate-limiter`, detail-type `Budget threshold reached`, detail a BudgetAlert.
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { ALERT_DETAIL_TYPE, ALERT_SOURCE, type AlertSink, type BudgetAlert } from '../engine/alerts';
import { CLIENT_TIMEOUTS, clientConfig } from './aws-clients';

export { ALERT_DETAIL_TYPE, ALERT_SOURCE } from '../engine/alerts';

export function eventBridgeSink(client: EventBridgeClient, busName = 'default'): AlertSink {
  return {
    async publish(alert: BudgetAlert): Promise<void> {
      const out = await client.send(
        new PutEventsCommand({
          Entries: [
            {
              Source: ALERT_SOURCE,
              DetailType: ALERT_DETAIL_TYPE,
              Detail: JSON.stringify(alert),
              EventBusName: busName,
            },
          ],
        }),
        { abortSignal: AbortSignal.timeout(CLIENT_TIMEOUTS.eventBridge.deadlineMs) },
      );
      // PutEvents answers 200 with the entries it refused counted: a refused entry is a failure like any other.
      if (out.FailedEntryCount) {
        const refused = out.Entries?.[0];
        throw Object.assign(
          new Error(`EventBridge refused the alert: ${refused?.ErrorCode} ${refused?.ErrorMessage}`),
          {
            name: 'AlertRefused',
          },
        );
      }
    },
  };
}

/**
 * The publisher the functions use: the default bus unless ALERT_EVENT_BUS names another. Its
 * client is made at the first alert: a deployment without calendar budgets never makes one.
 */
export function alertSinkFromEnvironment(): AlertSink {
  // The configuration (the caller's name in the user agent) as the function is built; the client at the first alert.
  const config = clientConfig(CLIENT_TIMEOUTS.eventBridge);
  const bus = process.env.ALERT_EVENT_BUS || 'default';
  let sink: AlertSink | undefined;
  return {
    publish: (alert) => {
      sink ??= eventBridgeSink(new EventBridgeClient(config), bus);
      return sink.publish(alert);
    },
  };
}
